from cdapp import views
from django.urls import path

urlpatterns = [
    path('info', views.info),
    path('run', views.run),
    path('collect', views.collect),
]
