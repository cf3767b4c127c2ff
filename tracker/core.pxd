# Cython declarations for the compiled build of core.py (setup.py compiles the .py; this
# file only types it): TrackerCore becomes an extension type whose fields are struct
# members, and the UDP path calls the swarm table, the connection ids, the parser and a
# cluster's PeerChanges.record as C functions. Every attribute is public (the daemon and
# the cluster set on_announce, peer_log, metrics, connection_ids as on the plain class).
cimport cython

from tracker.peerchanges cimport PeerChanges
from tracker.swarm cimport Peer, Swarm, Swarms
from tracker.udp_protocol cimport ConnectionIds


cdef class TrackerCore:
    cdef public object interval
    cdef public object min_interval
    cdef public Py_ssize_t max_numwant
    cdef public bint accept_ip_param
    cdef public Swarms swarms
    cdef public object proxies
    cdef public ConnectionIds connection_ids
    cdef public dict _ips
    cdef public dict _sources
    cdef public object on_announce
    cdef public PeerChanges peer_log
    cdef public bytes own_peer_prefix
    cdef public object metrics

    cpdef bint _is_demand(self, bytes peer_id, int event)

    cpdef bytes _packed(self, str host)

    cpdef bytes _source(self, tuple client)

    @cython.locals(source=bytes)
    cpdef object udp(self, object data, tuple client, double now)

    @cython.locals(swarm=Swarm, numwant=Py_ssize_t, event=int, asked_port=object,
                   seeder=bint, peers=bytes, peers6=bytes, tid=object, req=tuple,
                   peer_log=PeerChanges, prev=Peer, prev_id=bytes)
    cpdef object udp_from(self, object data, bytes source, int port, double now)

    @cython.locals(records=list)
    cpdef bytes _udp_scrape(self, object tid, tuple hashes)
