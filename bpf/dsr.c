// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dsrlab's own Cilium-style DSR NodePort datapath, as two tc programs.
 *
 *   dsr_from_netdev  node eth0 ingress
 *     - service path: (daddr, dport, proto) is a service -> pick a backend
 *       (random, remembered in lb_ct), DNAT to it keeping the client's
 *       source; local backend: plain DNAT + dsr_revnat entry; remote backend
 *       of a DSR service: insert the 8-byte DSR IPv4 option on TCP SYNs and
 *       on every UDP datagram (or drop it when the option does not fit:
 *       header over 60 bytes, tot_len + 8 over the configured MTU or over
 *       65535); then FIB lookup + redirect.
 *     - backend path: a TCP SYN or UDP datagram whose first IP option is the
 *       DSR option teaches dsr_revnat (client, backend) -> service; a SYN
 *       without it clears that flow's entry. The packet is never changed.
 *   dsr_to_netdev    node eth0 egress
 *     - replies matching dsr_revnat get their source rewritten to the
 *       service address and port.
 *
 * A first fragment is handled as the whole datagram (it has the ports);
 * with fragment tracking (CFG_F_FRAGMENTS) its ports are remembered in
 * dsr_frags and the later fragments are translated with it
 * (parse_fragment()). As Cilium's nodeport path, both hooks drop a TCP/UDP
 * fragment they cannot place: any, with tracking off; a later one whose
 * first fragment was not seen, with it on.
 *
 * Drops set skb->cb[0] to the reason (enum dsr_event) and count it in
 * dsr_counters; redirects leave the target ifindex in skb->cb[1].
 * Backend choice is random unless dsr_config asks for a seeded flow hash.
 * Packet pointers are only used while parsing; every write goes through
 * helpers (store_bytes / csum_replace / adjust_room).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stdbool.h>
#include <stddef.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "dsr.h"

#ifndef AF_INET
#define AF_INET 2
#endif

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPV4_BASE_LEN 20
#define IPV4_MAX_HLEN 60
#define TCP_FLAG_FIN_BIT 0x01
#define TCP_FLAG_SYN_BIT 0x02
#define TCP_FLAG_ACK_BIT 0x10
/* enough for Ethernet + the largest IPv4 header + a TCP base header */
#define PULL_LEN (ETH_HLEN + IPV4_MAX_HLEN + 20)

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lb_svc_key);
	__type(value, struct lb_svc_val);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_be_key);
	__type(value, struct lb_be_val);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_ct_key);
	__type(value, struct lb_ct_val);
} lb_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dsr_revnat_key);
	__type(value, struct dsr_revnat_val);
} dsr_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_snat_key);
	__type(value, struct lb_snat_val);
} lb_snat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct dsr_frag_key);
	__type(value, struct dsr_frag_val);
} dsr_frags SEC(".maps");

/* Maglev tables, maglev_size entries per service: the backend slot (1..count) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_DEFAULT_SIZE);
	__type(key, __u32);
	__type(value, __u16);
} lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dsr_config);
} dsr_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EV_MAX);
	__type(key, __u32);
	__type(value, __u64);
} dsr_counters SEC(".maps");

/* What parse() learned about an IPv4 TCP/UDP packet. */
struct pkt {
	__u32 hlen;    /* IPv4 header length in bytes (20..60) */
	__u32 tot_len; /* IPv4 total length, host order */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 ttl;
	__u8 tos;
	__u8 frag; /* FRAG_NONE, FRAG_FIRST or FRAG_LATER (no L4 header: ports from dsr_frags) */
};

enum { FRAG_NONE = 0, FRAG_FIRST = 1, FRAG_LATER = 2 };

enum {
	PARSE_L4 = 0,   /* IPv4 TCP/UDP, struct pkt filled */
	PARSE_PASS = 1, /* not ours: non-IPv4, a later fragment unknown, other L4 protocol */
};

static __always_inline void count(__u32 ev)
{
	__u64 *c = bpf_map_lookup_elem(&dsr_counters, &ev);

	if (c)
		*c += 1;
}

static __always_inline int drop(struct __sk_buff *skb, __u32 reason)
{
	skb->cb[CB_DROP_REASON] = reason;
	count(reason);
	return TC_ACT_SHOT;
}

static __always_inline struct dsr_config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dsr_config, &zero);
}

static __always_inline bool opt_network_order(void)
{
	struct dsr_config *cfg = config();

	return cfg && (cfg->flags & CFG_F_OPT_NETWORK_ORDER);
}

/*
 * The ports (and TCP flags) of the TCP or UDP header at l4, hlen bytes into
 * an unfragmented IPv4 packet of tot bytes. PARSE_L4, PARSE_PASS for other
 * protocols, or -DROP_TRUNCATED_L4.
 */
static __always_inline int parse_ports(void *l4, __u32 hlen, __u32 tot, void *data_end,
				       struct pkt *p)
{
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if (tot < hlen + sizeof(*tcp) || (void *)(tcp + 1) > data_end)
			return -DROP_TRUNCATED_L4;
		p->sport = tcp->source;
		p->dport = tcp->dest;
		p->tcp_flags = ((__u8 *)tcp)[13];
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if (tot < hlen + sizeof(*udp) || (void *)(udp + 1) > data_end)
			return -DROP_TRUNCATED_L4;
		p->sport = udp->source;
		p->dport = udp->dest;
	} else {
		count(EV_PASS_OTHER_PROTO);
		return PARSE_PASS;
	}
	return PARSE_L4;
}

static __always_inline bool fragments_tracked(void)
{
	struct dsr_config *cfg = config();

	return cfg && (cfg->flags & CFG_F_FRAGMENTS);
}

/*
 * A fragment (MF set or an offset). The first fragment is parsed as a whole
 * packet would be (its L4 header must be there: a first fragment too short
 * for it is dropped, as RFC 1858 advises), so it is translated like one;
 * tracked, its ports are remembered. A later fragment gets them from
 * dsr_frags (PARSE_L4 with p->frag = FRAG_LATER, no TCP flags) when its first
 * fragment was seen here. As Cilium's (lb4_extract_tuple, ipv4_load_l4_ports),
 * a fragment that cannot be placed is dropped: any TCP/UDP fragment when
 * tracking is off (-DROP_FRAG_NOSUPPORT), a later one whose first was not
 * seen when it is on (-DROP_FRAG_NOT_FOUND).
 */
static __always_inline int parse_fragment(struct iphdr *ip, __u32 hlen, __u32 tot,
					  void *data_end, struct pkt *p)
{
	struct dsr_frag_key fk = {
		.saddr = ip->saddr, .daddr = ip->daddr, .id = ip->id, .proto = ip->protocol,
	};
	struct dsr_frag_val fv, *found;
	int ret;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) {
		count(EV_PASS_FRAGMENT);
		return PARSE_PASS;
	}
	if (!fragments_tracked())
		return -DROP_FRAG_NOSUPPORT;
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		found = bpf_map_lookup_elem(&dsr_frags, &fk);
		if (!found)
			return -DROP_FRAG_NOT_FOUND;
		p->sport = found->sport;
		p->dport = found->dport;
		p->frag = FRAG_LATER;
		count(EV_FRAG_FOUND);
		return PARSE_L4;
	}
	ret = parse_ports((void *)ip + hlen, hlen, tot, data_end, p);
	if (ret != PARSE_L4)
		return ret;
	p->frag = FRAG_FIRST;
	fv.sport = p->sport;
	fv.dport = p->dport;
	if (!bpf_map_update_elem(&dsr_frags, &fk, &fv, BPF_ANY))
		count(EV_FRAG_TRACKED);
	return PARSE_L4;
}

/*
 * Validate and parse Ethernet + IPv4 + TCP/UDP. Returns PARSE_L4,
 * PARSE_PASS, or a negative drop reason. Never writes to the packet.
 */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 len = skb->len;
	__u32 want = len < PULL_LEN ? len : PULL_LEN;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 hlen, tot;

	if (data + want > data_end) {
		/* headers not linear (or the packet is short): pull what exists */
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) {
		count(EV_PASS_NOT_IPV4);
		return PARSE_PASS;
	}
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -DROP_TRUNCATED_IP;
	if (ip->version != 4)
		return -DROP_BAD_VERSION;
	hlen = ip->ihl * 4;
	if (hlen < IPV4_BASE_LEN)
		return -DROP_BAD_IHL;
	tot = bpf_ntohs(ip->tot_len);
	if (hlen > tot)
		return -DROP_BAD_IHL;
	if (tot + ETH_HLEN > len)
		return -DROP_BAD_TOT_LEN;
	if ((void *)ip + hlen > data_end)
		return -DROP_TRUNCATED_IP;

	p->hlen = hlen;
	p->tot_len = tot;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tos = ip->tos;

	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return parse_fragment(ip, hlen, tot, data_end, p);

	return parse_ports((void *)ip + hlen, hlen, tot, data_end, p);
}

/* A 32-bit finalizer (lowbias32): every input bit affects every output bit. */
static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x7feb352dU;
	h ^= h >> 15;
	h *= 0x846ca68bU;
	h ^= h >> 16;
	return h;
}

/*
 * The backend choice for a new flow: random (Cilium's --bpf-lb-algorithm
 * random), or with CFG_F_SEEDED_SELECT a seeded hash of the flow tuple, so
 * a run is reproducible. Fields are hashed as the u32 values they load as
 * (network byte order in memory).
 */
static __always_inline __u32 select_hash(const struct pkt *p)
{
	struct dsr_config *cfg = config();
	__u32 h;

	if (!cfg || !(cfg->flags & CFG_F_SEEDED_SELECT))
		return bpf_get_prandom_u32();
	h = mix32(cfg->seed ^ p->saddr);
	h = mix32(h ^ p->daddr);
	h = mix32(h ^ ((__u32)p->sport | ((__u32)p->dport << 16)));
	return mix32(h ^ p->proto);
}

/*
 * Maglev's flow hash: source address and port, destination port and
 * protocol, seeded; not the destination address, so every node's NodePort
 * maps a flow to the same table entry (lab/datapath/selection.py mirrors it).
 */
static __always_inline __u32 maglev_hash(const struct pkt *p, __u32 seed)
{
	__u32 h = mix32(seed ^ p->saddr);

	h = mix32(h ^ ((__u32)p->sport | ((__u32)p->dport << 16)));
	return mix32(h ^ p->proto);
}

/* The backend slot (1..n) for a new flow of a service; 0 when there is none. */
static __always_inline __u16 select_slot(const struct pkt *p, const struct lb_svc_val *svc)
{
	struct dsr_config *cfg;
	__u16 *slot;
	__u32 idx;

	if (!(svc->flags & SVC_F_MAGLEV))
		return (select_hash(p) % svc->count) + 1;
	cfg = config();
	if (!cfg || !cfg->maglev_size)
		return 0;
	idx = (__u32)svc->maglev_id * cfg->maglev_size +
	      maglev_hash(p, cfg->maglev_seed) % cfg->maglev_size;
	slot = bpf_map_lookup_elem(&lb_maglev, &idx);
	if (!slot || *slot == 0 || *slot > svc->count)
		return 0;
	count(EV_MAGLEV);
	return *slot;
}

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return ETH_HLEN + p->hlen +
	       (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
					: offsetof(struct udphdr, check));
}

/*
 * Rewrite the source (is_src) or destination address and port, keeping the
 * IPv4 and L4 checksums right (pseudo-header aware, so CHECKSUM_PARTIAL skbs
 * stay correct; a zero UDP checksum stays zero). A later fragment has no L4
 * header: only its address changes (the first fragment carries the
 * datagram's checksum, fixed for the whole). Returns 0 or a drop reason.
 */
static __always_inline int rewrite_addr_port(struct __sk_buff *skb, const struct pkt *p,
					     bool is_src, __be32 new_addr, __be16 new_port)
{
	__be32 old_addr = is_src ? p->saddr : p->daddr;
	__be16 old_port = is_src ? p->sport : p->dport;
	__u32 addr_off = is_src ? IP_SADDR_OFF : IP_DADDR_OFF;
	__u32 port_off = ETH_HLEN + p->hlen + (is_src ? 0 : 2);
	__u32 csum_off = l4_csum_off(p);
	__u64 l4_flags = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	bool has_l4 = p->frag != FRAG_LATER; /* a later fragment: the address only */

	if (old_addr != new_addr) {
		if (has_l4 && bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr,
						  l4_flags | BPF_F_PSEUDO_HDR | sizeof(new_addr)))
			return DROP_CSUM;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, sizeof(new_addr)))
			return DROP_CSUM;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0))
			return DROP_STORE;
	}
	if (has_l4 && old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					l4_flags | sizeof(new_port)))
			return DROP_CSUM;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
			return DROP_STORE;
	}
	return 0;
}

/*
 * Insert the DSR option right after the 20-byte base header (existing
 * options move behind it): IHL += 2, tot_len += 8, IPv4 checksum fixed by
 * difference. The L4 checksum is untouched (options are not in the
 * pseudo-header). The caller checked opt_fits() (hlen + 8 <= 60,
 * tot_len + 8 within the MTU and 65535).
 */
static __always_inline int insert_dsr_opt(struct __sk_buff *skb, struct pkt *p,
					  __be32 svc_addr, __be16 svc_port)
{
	struct dsr_opt_v4 opt = { .type = DSR_OPT_TYPE, .len = DSR_OPT_LEN };
	__u8 old_w[4], new_w[4];
	__u16 new_tot = p->tot_len + DSR_OPT_LEN;
	__s64 diff;

	if (opt_network_order()) {
		opt.port = svc_port;
		opt.addr = svc_addr;
	} else {
		/* Cilium: htons/htonl of values already in network order */
		opt.port = bpf_htons(svc_port);
		opt.addr = bpf_htonl(svc_addr);
	}

	if (bpf_skb_load_bytes(skb, ETH_HLEN, old_w, sizeof(old_w)))
		return DROP_TRUNCATED_IP;
	new_w[0] = (old_w[0] & 0xf0) | (((p->hlen + DSR_OPT_LEN) / 4) & 0x0f);
	new_w[1] = old_w[1];
	new_w[2] = new_tot >> 8;
	new_w[3] = new_tot & 0xff;

	diff = bpf_csum_diff((__be32 *)old_w, sizeof(old_w), (__be32 *)new_w, sizeof(new_w), 0);
	if (diff < 0)
		return DROP_CSUM;
	diff = bpf_csum_diff(NULL, 0, (__be32 *)&opt, sizeof(opt), (__u32)diff);
	if (diff < 0)
		return DROP_CSUM;

	if (bpf_skb_adjust_room(skb, DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0))
		return DROP_ADJUST_ROOM;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, new_w, sizeof(new_w), 0))
		return DROP_STORE;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + IPV4_BASE_LEN, &opt, sizeof(opt), 0))
		return DROP_STORE;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)diff, 0))
		return DROP_CSUM;

	p->hlen += DSR_OPT_LEN;
	p->tot_len = new_tot;
	return 0;
}

/*
 * Whether the DSR option can be added to this packet; 0 or the drop reason.
 * Checked before anything is written, so a refused packet leaves unchanged
 * and leaves no CT entry behind. Too big for the MTU: DROP_FRAG_NEEDED, which
 * the caller turns into an ICMP frag-needed with DSR ICMP errors on
 * (frag_needed()) or a drop with its reason with them off; the MTU comes
 * from dsr_config (0 = no check). tot_len is a 16-bit field, so a
 * packet within 8 bytes of 65535 is refused whatever the MTU.
 */
static __always_inline int opt_fits(const struct pkt *p)
{
	struct dsr_config *cfg = config();
	__u32 grown = p->tot_len + DSR_OPT_LEN;

	if (p->hlen + DSR_OPT_LEN > IPV4_MAX_HLEN)
		return DROP_OPT_TOO_LONG;
	if (cfg && cfg->mtu && grown > cfg->mtu)
		return DROP_FRAG_NEEDED;
	if (grown > 0xffff)
		return DROP_TOT_LEN_OVERFLOW;
	return 0;
}

static __always_inline __u16 csum_fold32(__s64 partial)
{
	__u32 sum = (__u32)partial;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_QUOTE_L4 8 /* the quoted packet: its IP header and 8 bytes after it */
#define ICMP_QUOTE_MAX (IPV4_MAX_HLEN + ICMP_QUOTE_L4)
#define ICMP_ERR_HDRS (IPV4_BASE_LEN + 8) /* the error's own IPv4 and ICMP headers */

struct icmp_frag_hdrs {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 unused;
	__be16 mtu;
};

/*
 * DSR ICMP errors: the packet (not yet translated, still to the service) is
 * too big for the DSR option, so it becomes the error sent back to the
 * client: ICMP destination unreachable / fragmentation needed with
 * MTU = device MTU - 8, quoting the packet's IP header (options included)
 * and its first 8 L4 bytes, i.e. the service's address and port, so the
 * client's kernel finds its socket and lowers its path MTU to the service.
 * As Cilium's: outer IPv4 IHL 5, TTL 64, DF, the packet's TOS and ID,
 * source the chosen backend's address (Cilium builds it after the DNAT),
 * destination the client; MACs swapped, out of the interface it came in on.
 */
static __always_inline int reply_frag_needed(struct __sk_buff *skb, const struct pkt *p,
					     __be32 backend_addr, __u32 mtu)
{
	struct icmp_frag_hdrs h = {};
	__u8 quote[ICMP_QUOTE_MAX];
	__u8 macs[2 * ETH_ALEN];
	__u32 qlen = p->hlen + ICMP_QUOTE_L4;
	__s64 sum;

	if (qlen > ICMP_QUOTE_MAX || qlen < IPV4_BASE_LEN + ICMP_QUOTE_L4 ||
	    p->tot_len < qlen)
		return drop(skb, DROP_FRAG_NEEDED);
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, qlen) ||
	    bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return drop(skb, DROP_TRUNCATED_IP);

	h.type = ICMP_DEST_UNREACH;
	h.code = ICMP_FRAG_NEEDED;
	h.mtu = bpf_htons(mtu - DSR_OPT_LEN);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, qlen, 0);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.type, 8, (__u32)sum);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	h.check = csum_fold32(sum);

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tos = p->tos;
	h.ip.tot_len = bpf_htons(ICMP_ERR_HDRS + qlen);
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, id), &h.ip.id,
			       sizeof(h.ip.id)))
		return drop(skb, DROP_TRUNCATED_IP);
	h.ip.frag_off = bpf_htons(0x4000); /* DF */
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = backend_addr;
	h.ip.daddr = p->saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	h.ip.check = csum_fold32(sum);

	/* the packet becomes: Ethernet, the error's headers, the quote */
	if (bpf_skb_change_tail(skb, ETH_HLEN + qlen, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_adjust_room(skb, ICMP_ERR_HDRS, BPF_ADJ_ROOM_MAC, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) ||
	    bpf_skb_store_bytes(skb, 0, &macs[ETH_ALEN], ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, &macs[0], ETH_ALEN, 0))
		return drop(skb, DROP_STORE);
	count(EV_ICMP_FRAG_NEEDED);
	skb->cb[CB_REDIR_IFINDEX] = skb->ifindex;
	skb->cb[CB_REDIR_KIND] = CB_REDIR_PLAIN;
	return bpf_redirect(skb->ifindex, 0);
}

/* Too big for the option: the ICMP error with DSR ICMP errors on, else the drop. */
static __always_inline int frag_needed(struct __sk_buff *skb, const struct pkt *p,
				       __be32 backend_addr)
{
	struct dsr_config *cfg = config();

	/* a later fragment's quote would hold no ports: no socket would find it */
	if (!cfg || !(cfg->flags & CFG_F_ICMP_ERRORS) || cfg->mtu <= DSR_OPT_LEN ||
	    p->frag == FRAG_LATER)
		return drop(skb, DROP_FRAG_NEEDED);
	return reply_frag_needed(skb, p, backend_addr, cfg->mtu);
}

static __always_inline int dec_ttl(struct __sk_buff *skb, struct pkt *p)
{
	__u8 old_w[2] = { p->ttl, p->proto };
	__u8 new_w[2] = { p->ttl - 1, p->proto };
	__u16 from, to;

	__builtin_memcpy(&from, old_w, sizeof(from));
	__builtin_memcpy(&to, new_w, sizeof(to));
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, from, to, sizeof(to)))
		return DROP_CSUM;
	if (bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_w[0], 1, 0))
		return DROP_STORE;
	p->ttl = new_w[0];
	return 0;
}

/*
 * Send the (translated) packet towards the backend: FIB lookup, then
 * redirect (MACs set) or redirect_neigh; anything else is left to the
 * stack untouched (which lowers the TTL itself when it forwards).
 */
static __always_inline int forward(struct __sk_buff *skb, struct pkt *p, __be32 daddr)
{
	struct bpf_fib_lookup fib = {};
	long rc;
	int ret;

	if (p->ttl <= 1) {
		count(EV_TTL_EXPIRED_PASS);
		return TC_ACT_OK;
	}
	fib.family = AF_INET;
	fib.tos = p->tos;
	fib.l4_protocol = p->proto;
	fib.tot_len = p->tot_len;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = skb->ingress_ifindex;

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(EV_FIB_PASS);
		return TC_ACT_OK;
	}
	ret = dec_ttl(skb, p);
	if (ret)
		return drop(skb, ret);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(EV_FIB_REDIRECT_NEIGH);
		skb->cb[CB_REDIR_IFINDEX] = fib.ifindex;
		skb->cb[CB_REDIR_KIND] = CB_REDIR_NEIGH;
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0))
		return drop(skb, DROP_STORE);
	count(EV_FIB_REDIRECT);
	skb->cb[CB_REDIR_IFINDEX] = fib.ifindex;
	skb->cb[CB_REDIR_KIND] = CB_REDIR_PLAIN;
	return bpf_redirect(fib.ifindex, 0);
}

/* The service p is addressed to (sk filled as its key), or NULL. */
static __always_inline struct lb_svc_val *lookup_service(const struct pkt *p,
							 struct lb_svc_key *sk)
{
	sk->addr = p->daddr;
	sk->port = p->dport;
	sk->proto = p->proto;
	return bpf_map_lookup_elem(&lb_services, sk);
}

/*
 * A new flow's backend: a random (or seeded) slot of the service, or its
 * Maglev table's entry. Fills ct with the backend and the flow's kind:
 * CT_F_LOCAL for a backend on this node, else CT_F_DSR for a DSR service or
 * CT_F_SNAT for a SNAT one. 0 or a drop reason.
 */
static __always_inline int select_backend(const struct pkt *p, const struct lb_svc_key *sk,
					  const struct lb_svc_val *svc, struct lb_ct_val *ct)
{
	struct lb_be_key bk = { .addr = sk->addr, .port = sk->port, .proto = sk->proto };
	struct lb_be_val *be;

	if (svc->count == 0)
		return svc->flags & SVC_F_LOCAL_ONLY ? DROP_NO_LOCAL_BACKEND : DROP_NO_BACKEND;
	bk.slot = select_slot(p, svc);
	be = bk.slot ? bpf_map_lookup_elem(&lb_backends, &bk) : NULL;
	if (!be)
		return DROP_NO_BACKEND;
	ct->backend_addr = be->addr;
	ct->backend_port = be->port;
	if (be->flags & BE_F_LOCAL)
		ct->flags |= CT_F_LOCAL;
	else if (svc->flags & SVC_F_DSR)
		ct->flags |= CT_F_DSR;
	else if (svc->flags & SVC_F_SNAT)
		ct->flags |= CT_F_SNAT;
	return 0;
}

/*
 * The flow's backend: its lb_ct entry, or for a new flow a fresh choice
 * (*is_new set; stored later by ct_commit(), once the packet is known to
 * go through; a later fragment gets none). 0 or a drop reason.
 */
static __always_inline int ct_lookup_or_select(const struct pkt *p, const struct lb_ct_key *ck,
					       const struct lb_svc_key *sk,
					       const struct lb_svc_val *svc,
					       struct lb_ct_val *ct, bool *is_new)
{
	struct lb_ct_val *ctp = bpf_map_lookup_elem(&lb_ct, ck);

	if (ctp) {
		*ct = *ctp;
		count(EV_CT_HIT);
		return 0;
	}
	*is_new = true;
	if (p->frag == FRAG_LATER)
		return 0; /* no backend is chosen for a piece: the caller passes it */
	return select_backend(p, sk, svc, ct);
}

/* TCP SYNs and every UDP datagram of a DSR flow carry the option. */
static __always_inline bool wants_dsr_opt(const struct pkt *p, const struct lb_ct_val *ct)
{
	return (ct->flags & CT_F_DSR) &&
	       (p->proto == IPPROTO_UDP || (p->tcp_flags & TCP_FLAG_SYN_BIT));
}

/*
 * A local backend's replies leave through dsr_to_netdev, which must rewrite
 * them: make sure dsr_revnat has (client, backend) -> service.
 */
static __always_inline void ensure_local_revnat(const struct pkt *p, const struct lb_ct_val *ct,
						bool is_new)
{
	struct dsr_revnat_key rk = {
		.client_addr = p->saddr,
		.backend_addr = ct->backend_addr,
		.client_port = p->sport,
		.backend_port = ct->backend_port,
		.proto = p->proto,
	};
	struct dsr_revnat_val rv = { .svc_addr = p->daddr, .svc_port = p->dport };

	if (is_new || !bpf_map_lookup_elem(&dsr_revnat, &rk))
		bpf_map_update_elem(&dsr_revnat, &rk, &rv, BPF_ANY);
}

/* This node's address for SNAT, or 0. */
static __always_inline __be32 node_addr(void)
{
	struct dsr_config *cfg = config();

	return cfg ? cfg->node_addr : 0;
}

/*
 * A SNATed flow's source port on this node, and its lb_snat entry (the way
 * back for the replies): a known flow keeps its port (its entry written
 * again if the LRU dropped it); a new one takes the first free port of a few
 * derived from its tuple, in SNAT_PORT_MIN..SNAT_PORT_MAX. 0 or a drop reason.
 */
static __always_inline int snat_port(const struct pkt *p, struct lb_ct_val *ct, bool is_new)
{
	struct lb_snat_key k = {
		.backend_addr = ct->backend_addr,
		.backend_port = ct->backend_port,
		.proto = p->proto,
	};
	struct lb_snat_val v = {
		.client_addr = p->saddr,
		.svc_addr = p->daddr,
		.client_port = p->sport,
		.svc_port = p->dport,
	};
	__u32 h = mix32(p->saddr ^ ((__u32)p->sport << 16) ^ p->proto);
	struct lb_snat_val *old;
	int i;

	if (!is_new) {
		k.nat_port = ct->nat_port;
		if (bpf_map_lookup_elem(&lb_snat, &k))
			return 0;
		return bpf_map_update_elem(&lb_snat, &k, &v, BPF_ANY) ? DROP_CT_UPDATE : 0;
	}
	for (i = 0; i < SNAT_PORT_TRIES; i++) {
		k.nat_port = bpf_htons(SNAT_PORT_MIN + (h + i * 4099) %
						   (SNAT_PORT_MAX - SNAT_PORT_MIN + 1));
		old = bpf_map_lookup_elem(&lb_snat, &k);
		if (old && (old->client_addr != v.client_addr || old->client_port != v.client_port))
			continue;
		if (bpf_map_update_elem(&lb_snat, &k, &v, BPF_ANY))
			return DROP_CT_UPDATE;
		ct->nat_port = k.nat_port;
		return 0;
	}
	return DROP_NO_NAT_PORT;
}

/*
 * Remember the flow: a new flow's lb_ct entry (a SNATed one with its source
 * port), and for a local backend its dsr_revnat entry. 0 or a drop reason.
 */
static __always_inline int ct_commit(const struct pkt *p, const struct lb_ct_key *ck,
				     struct lb_ct_val *ct, bool is_new)
{
	int ret;

	if (ct->flags & CT_F_SNAT) {
		if (!node_addr())
			return DROP_NO_NODE_ADDR;
		ret = snat_port(p, ct, is_new);
		if (ret)
			return ret;
	}
	if (is_new) {
		if (bpf_map_update_elem(&lb_ct, ck, ct, BPF_ANY))
			return DROP_CT_UPDATE;
		count(EV_CT_NEW);
	}
	if (ct->flags & CT_F_LOCAL)
		ensure_local_revnat(p, ct, is_new);
	return 0;
}

/*
 * The DNATed packet's way on: a local backend's goes up the stack; a remote
 * backend's gets the DSR option when wanted, then the FIB redirect.
 */
static __always_inline int to_backend(struct __sk_buff *skb, struct pkt *p,
				      const struct lb_svc_key *sk, const struct lb_ct_val *ct,
				      bool want_opt)
{
	int ret;

	if (ct->flags & CT_F_LOCAL) {
		count(EV_LOCAL_DNAT);
		return TC_ACT_OK;
	}
	if (want_opt) {
		ret = insert_dsr_opt(skb, p, sk->addr, sk->port);
		if (ret)
			return drop(skb, ret);
		count(EV_OPT_INSERTED);
	}
	return forward(skb, p, ct->backend_addr);
}

/*
 * A packet to a service: the flow's backend (lb_ct, or a new choice), the
 * option's room checked before anything is written or stored, the flow
 * remembered, DNAT, then on to the backend.
 */
static __always_inline int handle_service(struct __sk_buff *skb, struct pkt *p,
					  const struct lb_svc_key *sk,
					  const struct lb_svc_val *svc)
{
	struct lb_ct_key ck = {
		.client_addr = p->saddr,
		.svc_addr = p->daddr,
		.client_port = p->sport,
		.svc_port = p->dport,
		.proto = p->proto,
	};
	struct lb_ct_val ct = {};
	bool is_new = false, want_opt;
	int ret;

	count(EV_SVC_HIT);
	ret = ct_lookup_or_select(p, &ck, sk, svc, &ct, &is_new);
	if (ret)
		return drop(skb, ret);
	if (is_new && p->frag == FRAG_LATER) {
		/* its first fragment made no flow here: choose nothing for a piece */
		count(EV_PASS_FRAGMENT);
		return TC_ACT_OK;
	}
	want_opt = wants_dsr_opt(p, &ct);
	if (want_opt) {
		ret = opt_fits(p);
		if (ret == DROP_FRAG_NEEDED)
			return frag_needed(skb, p, ct.backend_addr);
		if (ret)
			return drop(skb, ret);
	}
	ret = ct_commit(p, &ck, &ct, is_new);
	if (ret)
		return drop(skb, ret);
	ret = rewrite_addr_port(skb, p, false, ct.backend_addr, ct.backend_port);
	if (ret)
		return drop(skb, ret);
	count(EV_DNAT);
	if (ct.flags & CT_F_SNAT) {
		__be32 src = node_addr();

		ret = rewrite_addr_port(skb, p, true, src, ct.nat_port);
		if (ret)
			return drop(skb, ret);
		p->saddr = src;
		p->sport = ct.nat_port;
		count(EV_SNAT);
	}
	return to_backend(skb, p, sk, &ct, want_opt);
}

/*
 * A reply to a SNATed flow (backend -> this node's address and a SNAT
 * port): back to the client, from the service address, and forwarded.
 * *hit is false (nothing done) for any other packet.
 */
static __always_inline int snat_reverse(struct __sk_buff *skb, struct pkt *p, bool *hit)
{
	struct lb_snat_key k = {
		.backend_addr = p->saddr,
		.backend_port = p->sport,
		.nat_port = p->dport,
		.proto = p->proto,
	};
	struct lb_snat_val *vp, v;
	__be32 self = node_addr();
	int ret;

	if (!self || p->daddr != self)
		return TC_ACT_OK;
	vp = bpf_map_lookup_elem(&lb_snat, &k);
	if (!vp)
		return TC_ACT_OK;
	v = *vp;
	*hit = true;
	ret = rewrite_addr_port(skb, p, false, v.client_addr, v.client_port);
	if (ret)
		return drop(skb, ret);
	ret = rewrite_addr_port(skb, p, true, v.svc_addr, v.svc_port);
	if (ret)
		return drop(skb, ret);
	p->saddr = v.svc_addr;
	p->sport = v.svc_port;
	count(EV_SNAT_REVERSE);
	return forward(skb, p, v.client_addr);
}

static __always_inline int handle_backend(struct __sk_buff *skb, const struct pkt *p)
{
	bool syn = p->proto == IPPROTO_TCP &&
		   (p->tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) == TCP_FLAG_SYN_BIT;
	struct dsr_revnat_key rk = {
		.client_addr = p->saddr,
		.backend_addr = p->daddr,
		.client_port = p->sport,
		.backend_port = p->dport,
		.proto = p->proto,
	};
	struct dsr_opt_v4 opt;

	if (!syn && p->proto != IPPROTO_UDP)
		return TC_ACT_OK;

	if (p->hlen >= IPV4_BASE_LEN + DSR_OPT_LEN &&
	    !bpf_skb_load_bytes(skb, ETH_HLEN + IPV4_BASE_LEN, &opt, sizeof(opt)) &&
	    opt.type == DSR_OPT_TYPE && opt.len == DSR_OPT_LEN) {
		struct dsr_revnat_val rv = {};

		if (opt_network_order()) {
			rv.svc_addr = opt.addr;
			rv.svc_port = opt.port;
		} else {
			rv.svc_addr = bpf_ntohl(opt.addr);
			rv.svc_port = bpf_ntohs(opt.port);
		}
		if (!bpf_map_update_elem(&dsr_revnat, &rk, &rv, BPF_ANY))
			count(EV_BACKEND_LEARNED);
	} else if (syn) {
		if (!bpf_map_delete_elem(&dsr_revnat, &rk))
			count(EV_BACKEND_CLEARED);
	}
	return TC_ACT_OK;
}

SEC("tc")
int dsr_from_netdev(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct lb_svc_key sk = {};
	struct lb_svc_val *svc;
	bool hit = false;
	int ret;

	ret = parse(skb, &p);
	if (ret < 0)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;

	svc = lookup_service(&p, &sk);
	if (svc)
		return handle_service(skb, &p, &sk, svc);
	ret = snat_reverse(skb, &p, &hit);
	if (hit)
		return ret;
	return handle_backend(skb, &p);
}

SEC("tc")
int dsr_to_netdev(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct dsr_revnat_key rk = {};
	struct dsr_revnat_val *rv;
	__be32 svc_addr;
	__be16 svc_port;
	int ret;

	ret = parse(skb, &p);
	/* a fragment that cannot be placed is dropped both ways, as Cilium's; a packet
	 * this node's stack made malformed is the stack's to answer for */
	if (ret == -DROP_FRAG_NOSUPPORT || ret == -DROP_FRAG_NOT_FOUND)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;

	rk.client_addr = p.daddr;
	rk.backend_addr = p.saddr;
	rk.client_port = p.dport;
	rk.backend_port = p.sport;
	rk.proto = p.proto;
	rv = bpf_map_lookup_elem(&dsr_revnat, &rk);
	if (!rv)
		return TC_ACT_OK;
	svc_addr = rv->svc_addr;
	svc_port = rv->svc_port;

	ret = rewrite_addr_port(skb, &p, true, svc_addr, svc_port);
	if (ret)
		return drop(skb, ret);
	count(EV_REVNAT_REWRITE);
	return TC_ACT_OK;
}
