# Cython declarations for the compiled build of peerchanges.py (setup.py compiles the .py;
# this file only types it): PeerChanges becomes an extension type (a cluster's SwarmSync
# extends it), so the core's call of record per announce and the flush's loop over every
# change run as C.
cimport cython

from tracker.swarm cimport Swarm


cdef class PeerChanges:
    cdef public dict downloads
    cdef public Py_ssize_t max_pending
    cdef public bint overflow
    cdef public dict pending

    @cython.locals(ih=bytes, k=bytes, pending=dict, old=tuple)
    cpdef record(self, Swarm swarm, bytes addr, bytes peer_id, object prev_id, bint seeder,
                 bint stopped, object downloads, double now)


@cython.locals(parts=list, k=bytes, change=tuple, peer_id=bytes, seeder=bint, stopped=bint,
               heard=double, ttl=Py_ssize_t)
cpdef bytes encode_batch(dict pending, dict downloads, double now, double timeout,
                         object stops=*)
