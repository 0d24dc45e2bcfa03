/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address and port rewriting with their checksums (DNAT, SNAT, reverse
 * NAT), and SNAT's source ports.
 */
#ifndef DSRLAB_LIB_NAT_H
#define DSRLAB_LIB_NAT_H

#include "common.h"
#include "ipv4.h"
#include "parse.h"
#include "select.h"

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

/* --- IPv6 ----------------------------------------------------------------- */

static __always_inline __u32 l4_csum_off6(const struct pkt6 *p)
{
	return ETH_HLEN + p->l4_off +
	       (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
					: offsetof(struct udphdr, check));
}

/*
 * rewrite_addr_port() for IPv6: the source (is_src) or destination address
 * and port, the L4 checksum fixed for the pseudo-header's address change by
 * difference (IPv6 has no header checksum; a zero UDP checksum stays zero).
 * Returns 0 or a drop reason.
 */
static __always_inline int rewrite6_addr_port(struct __sk_buff *skb, const struct pkt6 *p,
					      bool is_src, const union v6addr *new_addr,
					      __be16 new_port)
{
	const union v6addr *old_addr = is_src ? &p->saddr : &p->daddr;
	__be16 old_port = is_src ? p->sport : p->dport;
	__u32 addr_off = is_src ? IP6_SADDR_OFF : IP6_DADDR_OFF;
	__u32 port_off = ETH_HLEN + p->l4_off + (is_src ? 0 : 2);
	__u32 csum_off = l4_csum_off6(p);
	__u64 l4_flags = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	union v6addr from = *old_addr, to = *new_addr;
	__s64 diff;

	if (from.w[0] != to.w[0] || from.w[1] != to.w[1] || from.w[2] != to.w[2] ||
	    from.w[3] != to.w[3]) {
		diff = bpf_csum_diff(from.w, sizeof(from), to.w, sizeof(to), 0);
		if (diff < 0)
			return DROP_CSUM;
		if (bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff,
					l4_flags | BPF_F_PSEUDO_HDR))
			return DROP_CSUM;
		if (bpf_skb_store_bytes(skb, addr_off, &to, sizeof(to), 0))
			return DROP_STORE;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					l4_flags | sizeof(new_port)))
			return DROP_CSUM;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
			return DROP_STORE;
	}
	return 0;
}

#endif /* DSRLAB_LIB_NAT_H */
