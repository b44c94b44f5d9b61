"""Moved to :mod:`coldoc_tasks.coldoc.server` (and the modules both ends of
the protocol share, to :mod:`coldoc_tasks.coldoc`); the modules of this
package stay for the code and the pickles that name them."""
