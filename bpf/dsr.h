/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dsrlab datapath: map layouts, constants and the event/drop-reason enum.
 *
 * Everything the userspace side (lab/datapath/maps.py) must mirror lives
 * here. Addresses and ports are stored as they are on the wire (network
 * byte order); counts, slots and flags are host order.
 */
#ifndef DSRLAB_DSR_H
#define DSRLAB_DSR_H

#include <linux/types.h>

/*
 * The oldest kernel this datapath loads on, and why. lab/datapath/requires.py
 * reads both lines and refuses an older kernel before loading, with this
 * reason, instead of leaving it to the verifier ("unknown func"). Raise it
 * when a newer helper or map type comes in.
 */
#define DSRLAB_MIN_KERNEL "5.10"
#define DSRLAB_MIN_KERNEL_WHY "bpf_redirect_neigh() came in 5.10"

/* lb_services: (addr, port, proto) -> (count, flags) */
struct lb_svc_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

#define SVC_F_DSR (1U << 0)  /* remote backends get the DSR option */
#define SVC_F_SNAT (1U << 1) /* remote backends: source NATed to this node, replies back here */
/* the backend comes from the service's Maglev table (lb_maglev), not a random slot */
#define SVC_F_MAGLEV (1U << 2)
/* externalTrafficPolicy=Local: the slots hold this node's backends only */
#define SVC_F_LOCAL_ONLY (1U << 3)

struct lb_svc_val {
	__u16 count;     /* backends in slots 1..count */
	__u16 flags;     /* SVC_F_* */
	__u16 maglev_id; /* SVC_F_MAGLEV: lb_maglev[id * maglev_size ...] is its table */
	__u16 pad;
};

/* lb_backends: service key + slot (1..count) -> backend */
struct lb_be_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

#define BE_F_LOCAL (1U << 0) /* the backend runs on this node */

struct lb_be_val {
	__be32 addr;
	__be16 port;
	__u16 flags; /* BE_F_* */
};

/* lb_ct: the LB's memory of which backend a flow got */
struct lb_ct_key {
	__be32 client_addr;
	__be32 svc_addr;
	__be16 client_port;
	__be16 svc_port;
	__u8 proto;
	__u8 pad[3];
};

#define CT_F_LOCAL (1U << 0) /* backend is local (plain DNAT + revnat) */
#define CT_F_DSR (1U << 1)   /* flow is dispatched with the DSR option */
#define CT_F_SNAT (1U << 2)  /* flow's source is this node's address and nat_port */

struct lb_ct_val {
	__be32 backend_addr;
	__be16 backend_port;
	__u16 flags;     /* CT_F_* */
	__be16 nat_port; /* CT_F_SNAT */
	__u16 pad;
};

/* lb_snat: a SNATed flow's reply (backend -> node:nat_port) -> who it is for */
struct lb_snat_key {
	__be32 backend_addr;
	__be16 backend_port;
	__be16 nat_port;
	__u8 proto;
	__u8 pad[3];
};

struct lb_snat_val {
	__be32 client_addr;
	__be32 svc_addr;
	__be16 client_port;
	__be16 svc_port;
};

/* The source ports SNAT hands out: Linux's default ephemeral range, clear of NodePorts. */
#define SNAT_PORT_MIN 32768
#define SNAT_PORT_MAX 60999
#define SNAT_PORT_TRIES 8

/* Cilium's Maglev table sizes are primes from 251 to 131071; the default is 16381. */
#define MAGLEV_DEFAULT_SIZE 16381

/* dsr_revnat: (client, backend) -> service, for the reply's source */
struct dsr_revnat_key {
	__be32 client_addr;
	__be32 backend_addr;
	__be16 client_port;
	__be16 backend_port;
	__u8 proto;
	__u8 pad[3];
};

struct dsr_revnat_val {
	__be32 svc_addr;
	__be16 svc_port;
	__u16 pad;
};

/*
 * IPv6: the same tables keyed by 16-byte addresses (lb6_services,
 * lb6_backends, lb6_ct, dsr6_revnat). A service's value is struct
 * lb_svc_val, as IPv4's; Maglev tables share lb_maglev (maglev_id numbers
 * the services of both families). SVC_F_SNAT means nothing for IPv6: a
 * remote backend of a service without SVC_F_DSR gets a plain DNAT.
 */
union v6addr {
	__u8 b[16];
	__be32 w[4];
};

struct lb6_svc_key {
	union v6addr addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb6_be_key {
	union v6addr addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct lb6_be_val {
	union v6addr addr;
	__be16 port;
	__u16 flags; /* BE_F_* */
};

struct lb6_ct_key {
	union v6addr client_addr;
	union v6addr svc_addr;
	__be16 client_port;
	__be16 svc_port;
	__u8 proto;
	__u8 pad[3];
};

struct lb6_ct_val {
	union v6addr backend_addr;
	__be16 backend_port;
	__u16 flags; /* CT_F_LOCAL or CT_F_DSR */
};

struct dsr6_revnat_key {
	union v6addr client_addr;
	union v6addr backend_addr;
	__be16 client_port;
	__be16 backend_port;
	__u8 proto;
	__u8 pad[3];
};

struct dsr6_revnat_val {
	union v6addr svc_addr;
	__be16 svc_port;
	__u16 pad;
};

/* dsr_config[0].flags */
#define CFG_F_OPT_NETWORK_ORDER (1U << 0) /* else host order (Cilium's) */
/*
 * Backend selection from a seeded hash of the flow (saddr, daddr, sport,
 * dport, proto) instead of bpf_get_prandom_u32(): the same seed and flow
 * always give the same backend (lab/datapath/selection.py mirrors the hash).
 * Off by default: live selection is random, like Cilium's.
 */
#define CFG_F_SEEDED_SELECT (1U << 1)
/*
 * DSR ICMP errors (Cilium's ENABLE_DSR_ICMP_ERRORS): a packet the option
 * would grow past the MTU is answered with an ICMP destination unreachable /
 * fragmentation needed carrying mtu - 8, instead of being dropped silently.
 */
#define CFG_F_ICMP_ERRORS (1U << 2)

/*
 * IPv4 fragment tracking (Cilium's enable-ipv4-fragment-tracking): a first
 * fragment's ports are remembered in dsr_frags by (saddr, daddr, IP ID,
 * protocol), so the later fragments, which carry no L4 header, are
 * translated with their datagram: DNATed (and given the option) with it at
 * the LB, rev-NATed with it at the backend's node. Off: a first fragment is
 * still translated (it has the ports), the later ones pass untranslated
 * (EV_PASS_FRAGMENT).
 */
#define CFG_F_FRAGMENTS (1U << 3)

/* dsr_frags: a fragmented datagram -> the ports its first fragment carried */
struct dsr_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct dsr_frag_val {
	__be16 sport;
	__be16 dport;
};

struct dsr_config {
	__u32 flags;
	__u32 seed; /* used with CFG_F_SEEDED_SELECT */
	/*
	 * The device MTU: a packet the DSR option would grow beyond it
	 * (tot_len + 8 > mtu) is dropped with DROP_FRAG_NEEDED (Cilium with
	 * DSR ICMP errors off) or answered with ICMP frag-needed
	 * (CFG_F_ICMP_ERRORS). 0 = no check. Set by the loader, because
	 * bpf_check_mtu() needs 5.12 and the lab supports 5.10.
	 */
	__u32 mtu;
	__be32 node_addr;  /* SNAT's source address (this node's), 0 = none */
	__u32 maglev_size; /* M: entries per service in lb_maglev, 0 = none */
	/*
	 * The Maglev flow hash's seed. The hash leaves the destination address
	 * out (saddr, sport, dport, proto, as Cilium's): a flow sent to any
	 * node's NodePort picks the same backend.
	 */
	__u32 maglev_seed;
};

/*
 * skb->cb words the programs set (read back by BPF_PROG_TEST_RUN):
 * cb[0] the drop reason (enum dsr_event) before TC_ACT_SHOT; cb[1] the
 * target ifindex and cb[2] the kind (CB_REDIR_*) before TC_ACT_REDIRECT.
 */
#define CB_DROP_REASON 0
#define CB_REDIR_IFINDEX 1
#define CB_REDIR_KIND 2
#define CB_REDIR_PLAIN 1 /* bpf_redirect, MACs from the FIB */
#define CB_REDIR_NEIGH 2 /* bpf_redirect_neigh, the neighbour layer fills MACs */

/* The IPv4 DSR option: type 0x9a, length 8, port, address. */
#define DSR_OPT_TYPE 0x9a
#define DSR_OPT_LEN 8

struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__u16 port;
	__u32 addr;
};

/*
 * The IPv6 DSR extension header: a Destination Options header (next header
 * 60) right after the IPv6 header, 24 bytes: next header, hdrlen 2 (8-byte
 * units after the first 8), option type 0x1B (top bits 00: a node that does
 * not know it skips it), option length 20, the service address and port
 * (network order), 2 bytes of zeros, as Cilium writes them.
 */
#define DSR6_OPT_TYPE 0x1b
#define DSR6_OPT_LEN 20
#define DSR6_EXT_HDRLEN 2

struct dsr_ext6 {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 opt_type;
	__u8 opt_len;
	union v6addr addr;
	__be16 port;
	__u16 pad;
};

#define DSR6_EXT_LEN 24 /* sizeof(struct dsr_ext6) */

/*
 * Events and drop reasons, the index into dsr_counters. A drop writes its
 * reason into skb->cb[0] before TC_ACT_SHOT. Values are a contract with
 * lab/datapath/maps.py (EVENT_NAMES); only append.
 */
enum dsr_event {
	EV_NONE = 0,
	EV_PASS_NOT_IPV4 = 1, /* neither IPv4 nor IPv6 (the name predates IPv6) */
	EV_PASS_FRAGMENT = 2,
	EV_PASS_OTHER_PROTO = 3,
	EV_SVC_HIT = 4,
	EV_CT_NEW = 5,
	EV_CT_HIT = 6,
	EV_DNAT = 7,
	EV_OPT_INSERTED = 8,
	EV_LOCAL_DNAT = 9,
	EV_FIB_REDIRECT = 10,
	EV_FIB_REDIRECT_NEIGH = 11,
	EV_FIB_PASS = 12,
	EV_BACKEND_LEARNED = 13,
	EV_BACKEND_CLEARED = 14,
	EV_REVNAT_REWRITE = 15,
	EV_TTL_EXPIRED_PASS = 16,
	EV_SNAT = 17,         /* a new or known flow's source set to the node's address */
	EV_SNAT_REVERSE = 18, /* a reply to a SNATed flow, sent on to the client */
	EV_MAGLEV = 19,       /* a backend chosen from the Maglev table */
	EV_ICMP_FRAG_NEEDED = 20, /* too big for the option: ICMP frag-needed sent back */
	EV_FRAG_TRACKED = 21,     /* a first fragment's ports remembered (CFG_F_FRAGMENTS) */
	EV_FRAG_FOUND = 22,       /* a later fragment given its first fragment's ports */
	EV_ICMP6_PKT_TOO_BIG = 23, /* IPv6 too big for the extension: Packet Too Big sent back */
	EV_PASS_IPV6_EXTHDR = 24,  /* IPv6 with extension headers, not to a service: passed */
	/* Geneve dispatch (lib/geneve.h); numbered clear of the IPv6 events */
	EV_GENEVE_ENCAP = 26, /* a DSR flow's packet sent in Geneve to its backend's node */
	EV_GENEVE_DECAP = 27, /* Geneve to this node stripped, the inner packet delivered */
	EV_GENEVE_LEARNED = 28, /* the DSR TLV taught dsr_revnat (client, backend) -> service */
	/* drop reasons */
	DROP_TRUNCATED_IP = 32,
	DROP_BAD_VERSION = 33,
	DROP_BAD_IHL = 34,
	DROP_BAD_TOT_LEN = 35,
	DROP_TRUNCATED_L4 = 36,
	DROP_OPT_TOO_LONG = 37,
	DROP_NO_BACKEND = 38,
	DROP_ADJUST_ROOM = 39,
	DROP_CSUM = 40,
	DROP_STORE = 41,
	DROP_CT_UPDATE = 42,
	DROP_FRAG_NEEDED = 43,      /* tot_len + 8 > dsr_config.mtu */
	DROP_TOT_LEN_OVERFLOW = 44, /* tot_len + 8 > 65535 */
	DROP_NO_LOCAL_BACKEND = 45, /* externalTrafficPolicy=Local, no backend on this node */
	DROP_NO_NAT_PORT = 46,      /* SNAT found no free source port */
	DROP_NO_NODE_ADDR = 47,     /* SNAT service, but dsr_config.node_addr is unset */
	DROP_FRAG_NOSUPPORT = 48,   /* a TCP/UDP fragment, fragment tracking off */
	DROP_FRAG_NOT_FOUND = 49,   /* a later fragment whose first was not seen here */
	DROP_IPV6_EXTHDR = 50,      /* IPv6 to a service carrying extension headers */
	/* Geneve dispatch (lib/geneve.h); numbered clear of the IPv6 drops */
	DROP_NO_TUNNEL_ENDPOINT = 54, /* no dsr_tunnel entry for the backend's address */
	DROP_TUNNEL_FIB = 55,         /* no route (FIB) to the backend's node */
	DROP_GENEVE_TRUNCATED = 56,   /* shorter than UDP + Geneve + options + inner headers */
	DROP_GENEVE_BAD_HDR = 57,     /* UDP length, version, O bit or protocol type wrong */
	DROP_GENEVE_BAD_OPT = 58,     /* an option runs past the options, or the DSR TLV's size */
	DROP_GENEVE_CRIT_OPT = 59,    /* an unknown option with the critical bit */
	DROP_GENEVE_INNER = 60,       /* the inner frame is not Ethernet + a sound IPv4 header */
	EV_MAX = 64,
};

/*
 * Geneve dispatch (Cilium's loadBalancer.dsrDispatch=geneve), written and
 * read by the datapath itself (lib/geneve.h), with no kernel tunnel device.
 *
 * dsr_tunnel_cfg[0]: whether DSR flows are dispatched in Geneve, this
 * node's outer address (the LB's source, the backend node's "to me"), and
 * the VNI the LB writes (Cilium: the source security identity, world = 2).
 * dsr_tunnel: pod CIDR (LPM) -> the node owning it (Cilium's tunnel map).
 */
#define TUN_F_GENEVE (1U << 0)

struct dsr_tunnel_cfg {
	__u32 flags;  /* TUN_F_* */
	__be32 addr;  /* this node's address, 0 = no Geneve in or out */
	__u32 vni;    /* host order, 24 bits */
};

struct dsr_tunnel_key {
	__u32 prefixlen; /* LPM: bits of addr that count */
	__be32 addr;
};

struct dsr_tunnel_val {
	__be32 node_addr;
};

#define GENEVE_PORT 6081
#define GENEVE_PROTO_ETH 0x6558 /* Trans Ether Bridging: the inner packet is an Ethernet frame */
#define GENEVE_HDR_LEN 8
#define GENEVE_OPT_CRIT 0x80
#define DSR_GENEVE_OPT_CLASS 0x014B
#define DSR_GENEVE_OPT_TYPE (GENEVE_OPT_CRIT | 0x01)
#define DSR_GENEVE_OPT4_WORDS 2 /* address, port, 2 bytes of padding */
#define DSR_GENEVE_OPT4_LEN 12  /* the 4-byte option header + 2 words */

#endif /* DSRLAB_DSR_H */
