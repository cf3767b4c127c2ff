# Cython declarations for the compiled build of udpburst.py (setup.py compiles the .py; this
# file only types it): the burst's buffer, socket address and counters are C variables,
# the core's udp_from a C call (TrackerCore is an extension type, core.pxd).
cimport cython

from tracker.core cimport TrackerCore
from tracker.csocket cimport sockaddr, sockaddr_in, sockaddr_in6, socklen_t


@cython.locals(address="sockaddr *", address_len=socklen_t, got=Py_ssize_t, err=int,
               port=int, start=double, reply=bytes, source=bytes)
cdef object _serve(TrackerCore core, int fd, double now, Py_ssize_t limit)

@cython.locals(v4="sockaddr_in *", v6="sockaddr_in6 *", ip="unsigned char *")
cdef bytes _source(sockaddr *address)

cdef double _clock()
