/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Backend selection: random, a seeded flow hash (CFG_F_SEEDED_SELECT) or
 * the service's Maglev table (SVC_F_MAGLEV).
 */
#ifndef DSRLAB_LIB_SELECT_H
#define DSRLAB_LIB_SELECT_H

#include "common.h"
#include "parse.h"

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

/* --- IPv6: the same hashes, each address folded to 32 bits (its words XORed) --- */

static __always_inline __u32 fold6(const union v6addr *a)
{
	return a->w[0] ^ a->w[1] ^ a->w[2] ^ a->w[3];
}

static __always_inline __u32 select_hash6(const struct pkt6 *p)
{
	struct dsr_config *cfg = config();
	__u32 h;

	if (!cfg || !(cfg->flags & CFG_F_SEEDED_SELECT))
		return bpf_get_prandom_u32();
	h = mix32(cfg->seed ^ fold6(&p->saddr));
	h = mix32(h ^ fold6(&p->daddr));
	h = mix32(h ^ ((__u32)p->sport | ((__u32)p->dport << 16)));
	return mix32(h ^ p->proto);
}

static __always_inline __u32 maglev_hash6(const struct pkt6 *p, __u32 seed)
{
	__u32 h = mix32(seed ^ fold6(&p->saddr));

	h = mix32(h ^ ((__u32)p->sport | ((__u32)p->dport << 16)));
	return mix32(h ^ p->proto);
}

/* The backend slot (1..n) for a new IPv6 flow of a service; 0 when there is none. */
static __always_inline __u16 select_slot6(const struct pkt6 *p, const struct lb_svc_val *svc)
{
	struct dsr_config *cfg;
	__u16 *slot;
	__u32 idx;

	if (!(svc->flags & SVC_F_MAGLEV))
		return (select_hash6(p) % svc->count) + 1;
	cfg = config();
	if (!cfg || !cfg->maglev_size)
		return 0;
	idx = (__u32)svc->maglev_id * cfg->maglev_size +
	      maglev_hash6(p, cfg->maglev_seed) % cfg->maglev_size;
	slot = bpf_map_lookup_elem(&lb_maglev, &idx);
	if (!slot || *slot == 0 || *slot > svc->count)
		return 0;
	count(EV_MAGLEV);
	return *slot;
}

#endif /* DSRLAB_LIB_SELECT_H */
