# Cython declarations for the compiled build of swarm.py (setup.py compiles the .py; this
# file only types it): Peer, Swarm and Swarms become extension types, so their fields are
# struct members and their methods C calls. C integers only where a value is bounded
# (slots, indexes, counts of stored peers, caps, expiry buckets); Python ints where it may
# grow past 64 bits (downloaded: a cluster adds other trackers' counts). Every attribute
# is public: other modules and tests read and set them as on the plain classes
# (tracker.peermerge files other trackers' peers through _width, _queue and the cpdef
# helpers below).
cimport cython

from tracker.peerwindow cimport ring


cdef class Swarm


cdef class Peer:
    cdef public bytes peer_id
    cdef public Swarm swarm
    cdef public Py_ssize_t slot
    cdef public Py_ssize_t idx
    cdef public Py_ssize_t expires
    cdef public bint completed


cdef class Swarm:
    cdef public tuple hashes
    cdef public bint registered
    cdef public bint lazy
    cdef public dict peers
    cdef public tuple packed
    cdef public object _downloaded
    cdef public Py_ssize_t complete
    cdef public Py_ssize_t incomplete
    cdef public bytes scrape_http
    cdef public bytes scrape_udp

    @cython.locals(blob=bytearray)
    cpdef add(self, Peer peer, bytes addr)

    @cython.locals(blob=bytearray, w=Py_ssize_t, at=Py_ssize_t, last=bytes)
    cpdef take(self, Peer peer)


cdef class Swarms:
    cdef public double peer_timeout
    cdef public Py_ssize_t max_swarms
    cdef public Py_ssize_t max_peers_per_swarm
    cdef public Py_ssize_t max_peers
    cdef public bint open
    cdef public object rng
    cdef public dict by_hash
    cdef public object resolve
    cdef public Py_ssize_t swarm_count
    cdef public Py_ssize_t seeders
    cdef public Py_ssize_t leechers
    cdef public double _width
    cdef public dict _queue
    cdef public Py_ssize_t _bucket

    cpdef Swarm get_or_create(self, bytes info_hash)

    cpdef tuple announce(self, Swarm swarm, bytes addr, bytes peer_id, bint seeder, int event,
                         Py_ssize_t numwant, int families, double now)

    @cython.locals(slot=Py_ssize_t, bucket=Py_ssize_t, due=list, packed=tuple,
                   f=Py_ssize_t, w=Py_ssize_t, asker=Py_ssize_t, got=Py_ssize_t, out=bytes)
    cpdef tuple announce_peer(self, Swarm swarm, Peer peer, bytes addr, bytes peer_id,
                              bint seeder, int event, Py_ssize_t numwant, int families,
                              double now)

    cpdef _count(self, Py_ssize_t slot, Py_ssize_t delta)

    @cython.locals(swarm=Swarm)
    cpdef _unlink(self, Peer peer)

    @cython.locals(swarm=Swarm)
    cpdef _remove(self, Peer peer, bytes addr)
