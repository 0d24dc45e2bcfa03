/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Forwarding: TTL, FIB lookup, redirect (MACs from the FIB) or redirect_neigh.
 */
#ifndef DSRLAB_LIB_FIB_H
#define DSRLAB_LIB_FIB_H

#include "common.h"
#include "ipv4.h"
#include "parse.h"

/*
 * The redirect after a FIB lookup that found the way out (rc SUCCESS or
 * NO_NEIGH): redirect_neigh when the neighbour is unknown, else the FIB's
 * MACs written and a plain redirect; the kind and target go to skb->cb.
 */
static __always_inline int redirect_fib(struct __sk_buff *skb,
					const struct bpf_fib_lookup *fib, long rc)
{
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(EV_FIB_REDIRECT_NEIGH);
		skb->cb[CB_REDIR_IFINDEX] = fib->ifindex;
		skb->cb[CB_REDIR_KIND] = CB_REDIR_NEIGH;
		return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0);
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib->smac, ETH_ALEN, 0))
		return drop(skb, DROP_STORE);
	count(EV_FIB_REDIRECT);
	skb->cb[CB_REDIR_IFINDEX] = fib->ifindex;
	skb->cb[CB_REDIR_KIND] = CB_REDIR_PLAIN;
	return bpf_redirect(fib->ifindex, 0);
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
	fib.ifindex = skb->ifindex; /* at tc ingress: the device it came in on */

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(EV_FIB_PASS);
		return TC_ACT_OK;
	}
	ret = dec_ttl(skb, p);
	if (ret)
		return drop(skb, ret);
	return redirect_fib(skb, &fib, rc);
}

/* --- IPv6 ----------------------------------------------------------------- */

#ifndef AF_INET6
#define AF_INET6 10
#endif

/*
 * forward() for IPv6: FIB lookup (AF_INET6), hop limit - 1 (no header
 * checksum), then redirect with the FIB's MACs or redirect_neigh; a hop
 * limit of 1 or a failed lookup leaves the packet to the stack untouched.
 */
static __always_inline int forward6(struct __sk_buff *skb, struct pkt6 *p,
				    const union v6addr *daddr)
{
	struct bpf_fib_lookup fib = {};
	__u8 hl;
	long rc;

	if (p->hop_limit <= 1) {
		count(EV_TTL_EXPIRED_PASS);
		return TC_ACT_OK;
	}
	fib.family = AF_INET6;
	fib.l4_protocol = p->proto;
	fib.tot_len = IPV6_HLEN + p->payload_len;
	__builtin_memcpy(fib.ipv6_src, &p->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, daddr, sizeof(fib.ipv6_dst));
	fib.ifindex = skb->ifindex; /* at tc ingress: the device it came in on */

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(EV_FIB_PASS);
		return TC_ACT_OK;
	}
	hl = p->hop_limit - 1;
	if (bpf_skb_store_bytes(skb, IP6_HOPLIMIT_OFF, &hl, 1, 0))
		return drop(skb, DROP_STORE);
	p->hop_limit = hl;
	return redirect_fib(skb, &fib, rc);
}

#endif /* DSRLAB_LIB_FIB_H */
