// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor of the datapath benchmark: a tc program that does nothing.
 * bench/datapath.py runs it through BPF_PROG_TEST_RUN exactly like the
 * real programs, so its ns/pkt is the cost of the test-run loop itself.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
