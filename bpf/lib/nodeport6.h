/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The IPv6 halves of the two programs: dsr_from_netdev and dsr_to_netdev
 * hand an IPv6 frame (parse() says PARSE_IPV6) to these.
 */
#ifndef DSRLAB_LIB_NODEPORT6_H
#define DSRLAB_LIB_NODEPORT6_H

#include "backend.h"
#include "common.h"
#include "lb.h"
#include "parse.h"

/* eth0 ingress: a service's packet (LB path) or one for a backend here. */
static __always_inline int from_netdev6(struct __sk_buff *skb)
{
	struct pkt6 p = {};
	struct lb6_svc_key sk = {};
	struct lb_svc_val *svc;
	int ret;

	ret = parse6(skb, &p);
	if (ret < 0)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;
	svc = lookup_service6(&p, &sk);
	if (svc)
		return handle_service6(skb, &p, &sk, svc);
	if (p.exthdr) {
		count(EV_PASS_IPV6_EXTHDR);
		return TC_ACT_OK;
	}
	return handle_backend6(&p);
}

/* eth0 egress: a reply learned from the extension leaves from the service. */
static __always_inline int to_netdev6(struct __sk_buff *skb)
{
	struct pkt6 p = {};

	if (parse6(skb, &p) != PARSE_L4)
		return TC_ACT_OK;
	return revnat_reply6(skb, &p);
}

#endif /* DSRLAB_LIB_NODEPORT6_H */
