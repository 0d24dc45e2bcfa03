/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Geneve dispatch (Cilium >= 1.14, loadBalancer.dsrDispatch=geneve), written
 * and read here in BPF: no kernel Geneve device is involved (the lab's
 * kernel may have none).
 *
 * LB node (service path, after the DNAT): every packet of a DSR flow goes to
 * the backend's node (dsr_tunnel: pod CIDR -> node) in
 *   outer Ethernet | IPv4 (this node -> backend's node, TTL 64, no DF, the
 *   inner ID and ECN bits) | UDP (source port from the flow's hash as a
 *   tunnel device picks it, destination 6081, checksum 0 as Cilium's
 *   BPF_F_ZERO_CSUM_TX) | Geneve (version 0, O and C bits clear as the
 *   kernel's device writes them for a BPF-set option, protocol 0x6558, VNI
 *   from dsr_tunnel_cfg: Cilium's source identity) | on a TCP SYN and every
 *   UDP datagram, the DSR TLV (class 0x014B, type 0x81, length 2 words:
 *   service address, port, 2 bytes of zeros, in network order) | the inner
 *   Ethernet header as the LB node received it | the DNATed IPv4 packet
 *   (client address kept, TTL lowered once, no IP option).
 * Room is made with bpf_skb_adjust_room(BPF_ADJ_ROOM_MAC) and the encap
 * flags (so a GSO packet is segmented as a UDP tunnel); then the FIB lookup
 * of the outer destination and the redirect, as forward() does.
 *
 * Backend's node (eth0 ingress): UDP 6081 to this node's tunnel address is
 * checked whole (lengths, version, protocol, every option, the inner
 * Ethernet and IPv4 headers) before anything is written; a malformed one is
 * a named, counted drop. Sound: the DSR TLV teaches dsr_revnat (client,
 * backend) -> service, the outer IPv4/UDP/Geneve/TLV and the inner Ethernet
 * header are cut (the outer Ethernet header, addressed to this node, stays
 * in front of the inner IPv4 packet), and the packet goes on up the stack to
 * the pod as the option path's does.
 */
#ifndef DSRLAB_LIB_GENEVE_H
#define DSRLAB_LIB_GENEVE_H

#include <linux/udp.h>

#include "backend.h"
#include "common.h"
#include "csum.h"
#include "fib.h"
#include "ipv4.h"
#include "parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dsr_tunnel_cfg);
} dsr_tunnel_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dsr_tunnel_key);
	__type(value, struct dsr_tunnel_val);
} dsr_tunnel SEC(".maps");

/* what the LB writes in front of the inner Ethernet header (without the TLV) */
struct geneve_outer4 {
	struct iphdr ip;
	struct udphdr udp;
	__u8 ver_optlen; /* version (2 bits), options length in 4-byte words (6) */
	__u8 flags;      /* O (control), C (critical options present), reserved */
	__be16 proto;
	__u8 vni[3];
	__u8 rsvd;
};

struct geneve_dsr_tlv4 {
	__be16 opt_class;
	__u8 type;
	__u8 len; /* low 5 bits: 4-byte words after this 4-byte header */
	__be32 addr;
	__be16 port;
	__u16 pad;
};

#define GENEVE_OUTER_LEN 36 /* sizeof(struct geneve_outer4) */
/* the bytes the LB adds in front of the IPv4 packet, against the MTU: outer
 * IPv4, UDP, Geneve and the inner Ethernet header (+ the TLV when carried) */
#define GENEVE_BASE_OVERHEAD (GENEVE_OUTER_LEN + ETH_HLEN)
#define GENEVE_MAX_OPTS 8 /* options a received header may carry before the inner frame */
#define GENEVE_F_CONTROL 0x80

static __always_inline struct dsr_tunnel_cfg *tunnel_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dsr_tunnel_cfg, &zero);
}

/* This flow's packets go in Geneve: a DSR flow to a remote backend, Geneve on. */
static __always_inline bool geneve_dispatch(const struct lb_ct_val *ct)
{
	struct dsr_tunnel_cfg *cfg;

	if (!(ct->flags & CT_F_DSR))
		return false;
	cfg = tunnel_cfg();
	return cfg && (cfg->flags & TUN_F_GENEVE) && cfg->addr;
}

static __always_inline __u32 geneve_overhead(bool with_tlv)
{
	return GENEVE_BASE_OVERHEAD + (with_tlv ? DSR_GENEVE_OPT4_LEN : 0);
}

/*
 * Whether the packet can go in Geneve, checked before anything is written:
 * the backend's node (*node), the outer packet within 65535 and (but for a
 * GSO packet, whose segments adjust_room shrinks) the configured MTU.
 * 0 or the drop reason (DROP_FRAG_NEEDED: the caller's ICMP error or drop).
 */
static __always_inline int geneve_fits(struct __sk_buff *skb, const struct pkt *p,
				       __be32 backend_addr, bool with_tlv, __be32 *node)
{
	struct dsr_tunnel_key tk = { .prefixlen = 32, .addr = backend_addr };
	struct dsr_config *cfg = config();
	struct dsr_tunnel_val *tv;
	__u32 grown = p->tot_len + geneve_overhead(with_tlv);

	tv = bpf_map_lookup_elem(&dsr_tunnel, &tk);
	if (!tv || !tv->node_addr)
		return DROP_NO_TUNNEL_ENDPOINT;
	*node = tv->node_addr;
	if (grown > 0xffff)
		return DROP_TOT_LEN_OVERFLOW;
	if (cfg && cfg->mtu && grown > cfg->mtu && !skb->gso_size)
		return DROP_FRAG_NEEDED;
	return 0;
}

/* The outer headers for p (already DNATed) to node. */
static __always_inline int geneve_build(struct __sk_buff *skb, const struct pkt *p,
					__be32 local, __be32 node, __u32 vni, __u32 olen,
					struct geneve_outer4 *o)
{
	__u32 hash = bpf_get_hash_recalc(skb);
	__u16 sport = (__u16)((((__u64)hash * 65534) >> 32) + 1);
	__u32 outer_len = p->tot_len + GENEVE_BASE_OVERHEAD + olen;
	__s64 sum;

	o->ip.version = 4;
	o->ip.ihl = 5;
	o->ip.tos = p->tos & 0x03; /* ECN bits, as a tunnel device copies them */
	o->ip.tot_len = bpf_htons(outer_len);
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, id), &o->ip.id,
			       sizeof(o->ip.id)))
		return DROP_TRUNCATED_IP;
	o->ip.ttl = 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.saddr = local;
	o->ip.daddr = node;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&o->ip, sizeof(o->ip), 0);
	if (sum < 0)
		return DROP_CSUM;
	o->ip.check = csum_fold32(sum);

	o->udp.source = bpf_htons(sport);
	o->udp.dest = bpf_htons(GENEVE_PORT);
	o->udp.len = bpf_htons(outer_len - IPV4_BASE_LEN);
	o->udp.check = 0;

	o->ver_optlen = olen / 4;
	o->proto = bpf_htons(GENEVE_PROTO_ETH);
	o->vni[0] = (vni >> 16) & 0xff;
	o->vni[1] = (vni >> 8) & 0xff;
	o->vni[2] = vni & 0xff;
	return 0;
}

/*
 * Send the DNATed packet p to its backend's node in Geneve (geneve_fits()
 * said yes and gave node). Like forward(): TTL 1 is left to the stack, the
 * inner TTL is lowered; a node the FIB cannot reach is a drop, as the packet
 * could not leave any other way.
 */
static __always_inline int geneve_encap(struct __sk_buff *skb, struct pkt *p,
					const struct lb_svc_key *sk, __be32 node, bool with_tlv)
{
	struct dsr_tunnel_cfg *cfg = tunnel_cfg();
	struct geneve_dsr_tlv4 tlv = {
		.opt_class = bpf_htons(DSR_GENEVE_OPT_CLASS),
		.type = DSR_GENEVE_OPT_TYPE,
		.len = DSR_GENEVE_OPT4_WORDS,
		.addr = sk->addr,
		.port = sk->port,
	};
	__u64 room = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		     BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u32 olen = with_tlv ? DSR_GENEVE_OPT4_LEN : 0;
	struct bpf_fib_lookup fib = {};
	struct geneve_outer4 o = {};
	__u8 inner_eth[ETH_HLEN];
	__be32 local;
	__u32 vni;
	long rc;
	int ret;

	if (!cfg)
		return drop(skb, DROP_NO_TUNNEL_ENDPOINT);
	local = cfg->addr;
	vni = cfg->vni;
	if (p->ttl <= 1) {
		count(EV_TTL_EXPIRED_PASS);
		return TC_ACT_OK;
	}
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	/* tot_len 0: no MTU verdict from the FIB; geneve_fits() made it (a GSO packet's
	 * length is not its segments', and adjust_room shrinks them to fit) */
	fib.tot_len = 0;
	fib.ipv4_src = local;
	fib.ipv4_dst = node;
	fib.ifindex = skb->ifindex; /* at tc ingress: the device it came in on */
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return drop(skb, DROP_TUNNEL_FIB);

	ret = dec_ttl(skb, p);
	if (ret)
		return drop(skb, ret);
	ret = geneve_build(skb, p, local, node, vni, olen, &o);
	if (ret)
		return drop(skb, ret);
	if (bpf_skb_load_bytes(skb, 0, inner_eth, sizeof(inner_eth)))
		return drop(skb, DROP_TRUNCATED_IP);

	/* L2_ETH (5.11+) marks the inner frame as Ethernet for GSO; older kernels refuse it */
	if (bpf_skb_adjust_room(skb, GENEVE_BASE_OVERHEAD + olen, BPF_ADJ_ROOM_MAC,
				room | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) &&
	    bpf_skb_adjust_room(skb, GENEVE_BASE_OVERHEAD + olen, BPF_ADJ_ROOM_MAC, room))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &o, sizeof(o), 0))
		return drop(skb, DROP_STORE);
	if (with_tlv) {
		if (bpf_skb_store_bytes(skb, ETH_HLEN + GENEVE_OUTER_LEN, &tlv, sizeof(tlv), 0) ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + GENEVE_OUTER_LEN + DSR_GENEVE_OPT4_LEN,
					inner_eth, sizeof(inner_eth), 0))
			return drop(skb, DROP_STORE);
	} else if (bpf_skb_store_bytes(skb, ETH_HLEN + GENEVE_OUTER_LEN, inner_eth,
				       sizeof(inner_eth), 0)) {
		return drop(skb, DROP_STORE);
	}
	count(EV_GENEVE_ENCAP);

	return redirect_fib(skb, &fib, rc);
}

/*
 * The options of a received Geneve header (optlen bytes at off): every one
 * must end within them; the DSR TLV (its IPv4 size only) fills *tlv and
 * sets *found; another option with the critical bit is refused, as RFC 8926
 * asks of an endpoint that does not know it. 0 or the drop reason.
 */
static __always_inline int geneve_options(struct __sk_buff *skb, __u32 off, __u32 optlen,
					  struct geneve_dsr_tlv4 *tlv, bool *found)
{
	__u32 pos = 0;
	int i;

#pragma unroll
	for (i = 0; i < GENEVE_MAX_OPTS; i++) {
		__u8 h[4];
		__u32 len;

		if (pos >= optlen) /* both multiples of 4: a whole option header is there */
			return 0;
		if (bpf_skb_load_bytes(skb, off + pos, h, sizeof(h)))
			return DROP_GENEVE_TRUNCATED;
		len = (h[3] & 0x1f) * 4;
		if (pos + 4 + len > optlen)
			return DROP_GENEVE_BAD_OPT;
		if (h[0] == (DSR_GENEVE_OPT_CLASS >> 8) && h[1] == (DSR_GENEVE_OPT_CLASS & 0xff) &&
		    h[2] == DSR_GENEVE_OPT_TYPE) {
			if (len != DSR_GENEVE_OPT4_WORDS * 4)
				return DROP_GENEVE_BAD_OPT;
			if (bpf_skb_load_bytes(skb, off + pos, tlv, sizeof(*tlv)))
				return DROP_GENEVE_TRUNCATED;
			*found = true;
		} else if (h[2] & GENEVE_OPT_CRIT) {
			return DROP_GENEVE_CRIT_OPT;
		}
		pos += 4 + len;
	}
	return pos >= optlen ? 0 : DROP_GENEVE_BAD_OPT;
}

/*
 * A received packet: Geneve from an LB node to this node (*hit set) is
 * checked, taught from and stripped; anything else is left (hit false).
 * p is the outer packet on entry; the inner one's after a decap.
 */
static __always_inline int geneve_rx(struct __sk_buff *skb, struct pkt *p, bool *hit)
{
	struct dsr_tunnel_cfg *cfg = tunnel_cfg();
	struct geneve_dsr_tlv4 tlv = {};
	bool found = false, syn;
	__u8 h[16]; /* UDP + Geneve base header */
	__u8 inner[ETH_HLEN + IPV4_BASE_LEN];
	__u32 udp_off, ulen, optlen, inner_tot, cut;
	int ret;

	if (p->proto != IPPROTO_UDP || p->dport != bpf_htons(GENEVE_PORT) ||
	    p->frag != FRAG_NONE || !cfg || !cfg->addr || p->daddr != cfg->addr)
		return TC_ACT_OK;
	*hit = true;
	udp_off = ETH_HLEN + p->hlen;
	if (bpf_skb_load_bytes(skb, udp_off, h, sizeof(h)))
		return drop(skb, DROP_GENEVE_TRUNCATED);
	ulen = ((__u32)h[4] << 8) | h[5];
	if (ulen != p->tot_len - p->hlen)
		return drop(skb, DROP_GENEVE_BAD_HDR);
	optlen = (h[8] & 0x3f) * 4;
	if ((h[8] >> 6) != 0 || (h[9] & GENEVE_F_CONTROL) || h[10] != (GENEVE_PROTO_ETH >> 8) ||
	    h[11] != (GENEVE_PROTO_ETH & 0xff))
		return drop(skb, DROP_GENEVE_BAD_HDR);
	if (sizeof(h) + optlen + sizeof(inner) > ulen)
		return drop(skb, DROP_GENEVE_TRUNCATED);
	ret = geneve_options(skb, udp_off + sizeof(h), optlen, &tlv, &found);
	if (ret)
		return drop(skb, ret);
	if (bpf_skb_load_bytes(skb, udp_off + sizeof(h) + optlen, inner, sizeof(inner)))
		return drop(skb, DROP_GENEVE_TRUNCATED);
	inner_tot = ((__u32)inner[ETH_HLEN + 2] << 8) | inner[ETH_HLEN + 3];
	if (inner[12] != 0x08 || inner[13] != 0x00 || (inner[ETH_HLEN] >> 4) != 4 ||
	    (inner[ETH_HLEN] & 0x0f) < 5 ||
	    inner_tot != ulen - sizeof(h) - optlen - ETH_HLEN)
		return drop(skb, DROP_GENEVE_INNER);

	cut = p->hlen + sizeof(h) + optlen + ETH_HLEN;
	if (bpf_skb_adjust_room(skb, -(__s32)cut, BPF_ADJ_ROOM_MAC, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	count(EV_GENEVE_DECAP);

	__builtin_memset(p, 0, sizeof(*p));
	ret = parse(skb, p);
	if (ret < 0)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;
	syn = p->proto == IPPROTO_TCP &&
	      (p->tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) == TCP_FLAG_SYN_BIT;
	if (found && (syn || p->proto == IPPROTO_UDP)) {
		struct dsr_revnat_key rk = {
			.client_addr = p->saddr,
			.backend_addr = p->daddr,
			.client_port = p->sport,
			.backend_port = p->dport,
			.proto = p->proto,
		};
		struct dsr_revnat_val rv = { .svc_addr = tlv.addr, .svc_port = tlv.port };

		if (!bpf_map_update_elem(&dsr_revnat, &rk, &rv, BPF_ANY))
			count(EV_GENEVE_LEARNED);
		return TC_ACT_OK;
	}
	/* no TLV: as a packet without the option (a SYN clears its flow's entry) */
	return handle_backend(skb, p);
}

#endif /* DSRLAB_LIB_GENEVE_H */
