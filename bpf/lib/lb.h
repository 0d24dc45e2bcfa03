/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The service path (the node receiving the request): the flow's backend,
 * conntrack, DNAT (SNAT), the DSR option, on to the backend; and the
 * replies of SNATed flows.
 */
#ifndef DSRLAB_LIB_LB_H
#define DSRLAB_LIB_LB_H

#include "common.h"
#include "dsr_opt.h"
#include "fib.h"
#include "geneve.h"
#include "icmp.h"
#include "l4.h"
#include "nat.h"
#include "parse.h"
#include "select.h"

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
	bool is_new = false, want_opt, tunnel;
	__be32 node = 0;
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
	tunnel = geneve_dispatch(&ct);
	if (tunnel) {
		ret = geneve_fits(skb, p, ct.backend_addr, want_opt, &node);
		if (ret == DROP_FRAG_NEEDED)
			return frag_needed(skb, p, ct.backend_addr, geneve_overhead(want_opt));
		if (ret)
			return drop(skb, ret);
	} else if (want_opt) {
		ret = opt_fits(p);
		if (ret == DROP_FRAG_NEEDED)
			return frag_needed(skb, p, ct.backend_addr, DSR_OPT_LEN);
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
	if (tunnel)
		return geneve_encap(skb, p, sk, node, want_opt);
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

/* --- IPv6 ----------------------------------------------------------------- */

static __always_inline struct lb_svc_val *lookup_service6(const struct pkt6 *p,
							  struct lb6_svc_key *sk)
{
	sk->addr = p->daddr;
	sk->port = p->dport;
	sk->proto = p->proto;
	return bpf_map_lookup_elem(&lb6_services, sk);
}

/* select_backend() for IPv6: CT_F_LOCAL, CT_F_DSR or (neither) a plain DNAT. */
static __always_inline int select_backend6(const struct pkt6 *p, const struct lb6_svc_key *sk,
					   const struct lb_svc_val *svc, struct lb6_ct_val *ct)
{
	struct lb6_be_key bk = { .port = sk->port, .proto = sk->proto };
	struct lb6_be_val *be;

	if (svc->count == 0)
		return svc->flags & SVC_F_LOCAL_ONLY ? DROP_NO_LOCAL_BACKEND : DROP_NO_BACKEND;
	bk.addr = sk->addr;
	bk.slot = select_slot6(p, svc);
	be = bk.slot ? bpf_map_lookup_elem(&lb6_backends, &bk) : NULL;
	if (!be)
		return DROP_NO_BACKEND;
	ct->backend_addr = be->addr;
	ct->backend_port = be->port;
	if (be->flags & BE_F_LOCAL)
		ct->flags |= CT_F_LOCAL;
	else if (svc->flags & SVC_F_DSR)
		ct->flags |= CT_F_DSR;
	return 0;
}

/*
 * An IPv6 packet to a service: as handle_service(), for IPv6. A packet
 * carrying extension headers is refused (DROP_IPV6_EXTHDR, see dsr.c's
 * header); the extension's room is checked before anything is written or
 * stored; the flow remembered (a local backend's revnat entry too); DNAT;
 * a remote DSR backend's packet gets the extension (TCP SYN, every UDP
 * datagram), then the FIB redirect.
 */
static __always_inline int handle_service6(struct __sk_buff *skb, struct pkt6 *p,
					   const struct lb6_svc_key *sk,
					   const struct lb_svc_val *svc)
{
	struct lb6_ct_key ck = {
		.client_port = p->sport,
		.svc_port = p->dport,
		.proto = p->proto,
	};
	struct lb6_ct_val ct = {}, *ctp;
	bool is_new = false, want_ext;
	int ret;

	count(EV_SVC_HIT);
	if (p->exthdr || p->dsr_ext)
		return drop(skb, DROP_IPV6_EXTHDR);
	ck.client_addr = p->saddr;
	ck.svc_addr = p->daddr;
	ctp = bpf_map_lookup_elem(&lb6_ct, &ck);
	if (ctp) {
		ct = *ctp;
		count(EV_CT_HIT);
	} else {
		is_new = true;
		ret = select_backend6(p, sk, svc, &ct);
		if (ret)
			return drop(skb, ret);
	}
	want_ext = (ct.flags & CT_F_DSR) &&
		   (p->proto == IPPROTO_UDP || (p->tcp_flags & TCP_FLAG_SYN_BIT));
	if (want_ext) {
		ret = ext6_fits(p);
		if (ret == DROP_FRAG_NEEDED)
			return pkt_too_big6(skb, p, &ct.backend_addr);
		if (ret)
			return drop(skb, ret);
	}
	if (is_new) {
		if (bpf_map_update_elem(&lb6_ct, &ck, &ct, BPF_ANY))
			return drop(skb, DROP_CT_UPDATE);
		count(EV_CT_NEW);
	}
	if (ct.flags & CT_F_LOCAL) {
		struct dsr6_revnat_key rk = {
			.client_port = p->sport,
			.backend_port = ct.backend_port,
			.proto = p->proto,
		};
		struct dsr6_revnat_val rv = { .svc_port = p->dport };

		rk.client_addr = p->saddr;
		rk.backend_addr = ct.backend_addr;
		rv.svc_addr = p->daddr;
		if (is_new || !bpf_map_lookup_elem(&dsr6_revnat, &rk))
			bpf_map_update_elem(&dsr6_revnat, &rk, &rv, BPF_ANY);
	}
	ret = rewrite6_addr_port(skb, p, false, &ct.backend_addr, ct.backend_port);
	if (ret)
		return drop(skb, ret);
	count(EV_DNAT);
	if (ct.flags & CT_F_LOCAL) {
		count(EV_LOCAL_DNAT);
		return TC_ACT_OK;
	}
	if (want_ext) {
		ret = insert_dsr_ext6(skb, p, &sk->addr, sk->port);
		if (ret)
			return drop(skb, ret);
		count(EV_OPT_INSERTED);
	}
	return forward6(skb, p, &ct.backend_addr);
}

#endif /* DSRLAB_LIB_LB_H */
