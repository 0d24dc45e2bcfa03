/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every part uses: counting an event, dropping with a reason, the
 * configuration (dsr_config[0]) and its flags.
 */
#ifndef DSRLAB_LIB_COMMON_H
#define DSRLAB_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <stdbool.h>

#include <bpf/bpf_helpers.h>

#include "dsr.h"
#include "maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif

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

static __always_inline bool fragments_tracked(void)
{
	struct dsr_config *cfg = config();

	return cfg && (cfg->flags & CFG_F_FRAGMENTS);
}

/* This node's address for SNAT, or 0. */
static __always_inline __be32 node_addr(void)
{
	struct dsr_config *cfg = config();

	return cfg ? cfg->node_addr : 0;
}

#endif /* DSRLAB_LIB_COMMON_H */
