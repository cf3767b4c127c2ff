# Cython declarations for the compiled build of peerchanges.py (setup.py compiles the .py;
# this file only types it): PeerChanges becomes an extension type (a cluster's SwarmSync
# extends it), so the core's call of record per announce and the flush's pass over every
# record run as C.
cimport cython

from tracker.swarm cimport Swarm


cdef bint COMPILED


cdef class PeerChanges:
    cdef public dict downloads
    cdef public Py_ssize_t max_pending
    cdef public bint overflow
    cdef public dict pending
    cdef public double since

    @cython.locals(ih=bytes, k=bytes, pending=dict, old=bytes, heard=cython.longlong)
    cpdef record(self, Swarm swarm, bytes addr, bytes peer_id, object prev_id, bint seeder,
                 bint stopped, object downloads, double now)

    cdef _drop(self, double now)


cpdef object sent_id(bytes record)


@cython.locals(batch=bytearray)
cpdef bytes encode_batch(object pending, object downloads, double since, double now,
                         double timeout)


@cython.locals(i=Py_ssize_t, n=Py_ssize_t, op=int, ttl=cython.longlong, known=int, v6=int,
               replaces=int, top=cython.longlong)
cpdef to_ttl(bytearray batch, long long shift)


@cython.locals(out=bytes, p="char *")
cdef bytes _joined(bytes a, bytes b)


@cython.locals(out=bytes, p="unsigned char *")
cdef bytes _keyed_v4(int op, bytes key, bytes peer_id, long long heard)
