/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The backend path (a backend's node): learning the service from the DSR
 * option, and rewriting the replies' source to it.
 */
#ifndef DSRLAB_LIB_BACKEND_H
#define DSRLAB_LIB_BACKEND_H

#include "common.h"
#include "l4.h"
#include "nat.h"
#include "parse.h"

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

/*
 * A reply leaving this node (dsr_to_netdev): one matching dsr_revnat gets
 * its source rewritten to the service address and port. rkp is the caller's
 * key, zeroed before it parsed (so the program stays as it was before the
 * split: the same instructions, the same verifier figures).
 */
static __always_inline int revnat_reply(struct __sk_buff *skb, struct pkt *p,
					struct dsr_revnat_key *rkp)
{
	struct dsr_revnat_val *rv;
	__be32 svc_addr;
	__be16 svc_port;
	int ret;

	rkp->client_addr = p->daddr;
	rkp->backend_addr = p->saddr;
	rkp->client_port = p->dport;
	rkp->backend_port = p->sport;
	rkp->proto = p->proto;
	rv = bpf_map_lookup_elem(&dsr_revnat, rkp);
	if (!rv)
		return TC_ACT_OK;
	svc_addr = rv->svc_addr;
	svc_port = rv->svc_port;

	ret = rewrite_addr_port(skb, p, true, svc_addr, svc_port);
	if (ret)
		return drop(skb, ret);
	count(EV_REVNAT_REWRITE);
	return TC_ACT_OK;
}

/* --- IPv6 ----------------------------------------------------------------- */

/*
 * handle_backend() for IPv6: a TCP SYN or UDP datagram whose first
 * extension header is the DSR one teaches dsr6_revnat (client, backend) ->
 * service; a SYN without it (and without other extension headers) clears
 * that flow's entry. The packet is never changed: the extension's option
 * type 0x1B tells the pod's kernel to skip it.
 */
static __always_inline int handle_backend6(const struct pkt6 *p)
{
	bool syn = p->proto == IPPROTO_TCP &&
		   (p->tcp_flags & (TCP_FLAG_SYN_BIT | TCP_FLAG_ACK_BIT)) == TCP_FLAG_SYN_BIT;
	struct dsr6_revnat_key rk = {
		.client_port = p->sport,
		.backend_port = p->dport,
		.proto = p->proto,
	};

	if (!syn && p->proto != IPPROTO_UDP)
		return TC_ACT_OK;
	rk.client_addr = p->saddr;
	rk.backend_addr = p->daddr;
	if (p->dsr_ext) {
		struct dsr6_revnat_val rv = { .svc_port = p->opt_port };

		rv.svc_addr = p->opt_addr;
		if (!bpf_map_update_elem(&dsr6_revnat, &rk, &rv, BPF_ANY))
			count(EV_BACKEND_LEARNED);
	} else if (syn && !p->exthdr) {
		if (!bpf_map_delete_elem(&dsr6_revnat, &rk))
			count(EV_BACKEND_CLEARED);
	}
	return TC_ACT_OK;
}

/* revnat_reply() for IPv6: a reply matching dsr6_revnat leaves from the service. */
static __always_inline int revnat_reply6(struct __sk_buff *skb, const struct pkt6 *p)
{
	struct dsr6_revnat_key rk = {
		.client_port = p->dport,
		.backend_port = p->sport,
		.proto = p->proto,
	};
	struct dsr6_revnat_val *rv, v;
	int ret;

	if (p->exthdr || p->dsr_ext)
		return TC_ACT_OK;
	rk.client_addr = p->daddr;
	rk.backend_addr = p->saddr;
	rv = bpf_map_lookup_elem(&dsr6_revnat, &rk);
	if (!rv)
		return TC_ACT_OK;
	v = *rv;
	ret = rewrite6_addr_port(skb, p, true, &v.svc_addr, v.svc_port);
	if (ret)
		return drop(skb, ret);
	count(EV_REVNAT_REWRITE);
	return TC_ACT_OK;
}

#endif /* DSRLAB_LIB_BACKEND_H */
