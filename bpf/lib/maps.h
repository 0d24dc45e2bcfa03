/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath's maps (layouts in ../dsr.h, mirrored by lab/datapath/maps.py).
 */
#ifndef DSRLAB_LIB_MAPS_H
#define DSRLAB_LIB_MAPS_H

#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

#include "dsr.h"

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

/* IPv6 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lb6_svc_key);
	__type(value, struct lb_svc_val);
} lb6_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb6_be_key);
	__type(value, struct lb6_be_val);
} lb6_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb6_ct_key);
	__type(value, struct lb6_ct_val);
} lb6_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dsr6_revnat_key);
	__type(value, struct dsr6_revnat_val);
} dsr6_revnat SEC(".maps");

#endif /* DSRLAB_LIB_MAPS_H */
