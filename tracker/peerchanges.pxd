# Cython declarations for the compiled build of peerchanges.py (setup.py compiles the .py;
# this file only types it): PeerChanges becomes an extension type (a cluster's SwarmSync
# extends it), so the core's call of record per announce and the flush's pass over every
# record run as C.
cimport cython

from tracker.swarm cimport Peer, Swarm


cdef bint COMPILED


cdef class PeerChanges:
    cdef public dict downloads
    cdef public Py_ssize_t max_pending
    cdef public bint overflow
    cdef public dict peers
    cdef public dict pending
    cdef public double since

    @cython.locals(ih=bytes, k=bytes, peers=dict, pending=dict, old=bytes, stored=Peer)
    cpdef record(self, Swarm swarm, bytes addr, Peer peer, bytes peer_id, object prev_id,
                 bint seeder, bint stopped, object downloads, double now)

    @cython.locals(pending=dict, peers=dict, n=Py_ssize_t)
    cpdef tuple take(self, Py_ssize_t limit)

    @cython.locals(n=Py_ssize_t)
    cdef _new(self, double now)

    @cython.locals(heard=cython.longlong)
    cdef long long _heard(self, double now) except? -1

    @cython.locals(heard=cython.longlong)
    cdef object _held(self, object sent, bytes peer_id, double now)

    cdef _drop(self, double now)


cdef object _sent(object held, object prev_id)


@cython.locals(head=bytes, buf=bytearray, p="unsigned char *", i=Py_ssize_t, peer=Peer,
               swarm=Swarm, slot=Py_ssize_t, w=Py_ssize_t, heard=cython.longlong, op=int, ih=bytes,
               pid=bytes, record=bytes, seeder_op=int, v6_op=int, known=int)
cpdef bytes _packed(dict pending, dict peers)


cpdef object sent_id(bytes record)


@cython.locals(batch=bytearray)
cpdef bytes encode_batch(bytes records, object downloads, double since, double now,
                         double timeout)


@cython.locals(i=Py_ssize_t, n=Py_ssize_t, op=int, ttl=cython.longlong, known=int, v6=int,
               replaces=int, top=cython.longlong)
cpdef to_ttl(bytearray batch, long long shift)


@cython.locals(out=bytes, p="char *")
cdef bytes _joined(bytes a, bytes b)

