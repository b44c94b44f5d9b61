"""URLs of the example site."""

from django.urls import path
from reports import views

urlpatterns = [
    path('', views.index, name='index'),
    path('computation/<int:pk>/', views.detail, name='detail'),
    path('status/', views.status, name='status'),
]
