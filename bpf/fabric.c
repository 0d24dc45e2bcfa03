// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dsrlab fabric: what a cloud's network does to a node's frames between the
 * nodes, on purpose, so the lab can show DSR breaking the way it breaks there.
 *
 * fabric_from_node runs at tc ingress of a node's port on the lab's bridge
 * (the frames the node sends into the fabric). Per port (fabric_ports, by
 * ifindex) it can:
 *
 *   FABRIC_F_STRIP_OPTIONS: remove every IPv4 option (some clouds' fabrics
 *     and middleboxes do), the DSR option included; IHL, total length and
 *     header checksum fixed, the L4 checksum untouched (options are not in
 *     the pseudo-header).
 *   FABRIC_F_SRC_DST_CHECK: drop an IPv4 frame whose source is not the
 *     node's address nor in its pod CIDR (AWS's source/destination check on
 *     an ENI): a DNATed SYN that keeps the client's address never arrives.
 *   FABRIC_F_DROP_IPV6_EXT: drop an IPv6 frame whose IPv6 header is followed
 *     by any extension header (hop-by-hop, routing, fragment, ESP, AH,
 *     destination options, mobility, HIP, shim6, the experimental ones):
 *     many clouds' networks and middleboxes do (RFC 7872, RFC 9098), and the
 *     DSR Destination Options header goes with the packet.
 *
 * The IPv4 rules pass IPv6 untouched (IPv6 has no IPv4 options; the
 * source/destination check is IPv4's here), and the IPv6 rule passes IPv4.
 *
 *   loss (a threshold out of 2^32): drop a frame when bpf_get_prandom_u32()
 *     falls below it, the lab's loss on a link where the kernel has no
 *     sch_netem; a lost frame is gone before any other check.
 *
 * fabric_on_host is the same per-port work for a lab host's own interface
 * (the faults of lab/env/faults.py, at tc egress there): it passes a frame
 * with TC_ACT_UNSPEC instead of TC_ACT_OK, so that the host's own filters on
 * the same hook (a node's datapath) still run after it.
 *
 * Everything else passes untouched. fabric_counters counts what it did.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/ipv4.h"

#define FABRIC_F_STRIP_OPTIONS (1U << 0)
#define FABRIC_F_SRC_DST_CHECK (1U << 1)
#define FABRIC_F_DROP_IPV6_EXT (1U << 2)

struct fabric_port {
	__u32 flags;
	__be32 node_addr;
	__be32 pod_net;  /* the node's pod CIDR, network address */
	__be32 pod_mask; /* ... and mask (0: no pod CIDR) */
	__u32 loss;      /* drop when bpf_get_prandom_u32() < loss (0: never) */
};

enum fabric_event {
	FEV_PASS = 0,
	FEV_STRIPPED = 1,          /* options removed from a frame */
	FEV_SRC_DST_DROPPED = 2,   /* a foreign source dropped */
	FEV_STRIP_FAILED = 3,      /* could not shrink the frame: dropped */
	FEV_LOST = 4,              /* dropped at random (the port's loss) */
	FEV_IPV6_EXT_DROPPED = 5,  /* an IPv6 frame with an extension header dropped */
	FEV_MAX = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* ifindex of the bridge port */
	__type(value, struct fabric_port);
} fabric_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FEV_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fabric_counters SEC(".maps");

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void fcount(__u32 ev)
{
	__u64 *c = bpf_map_lookup_elem(&fabric_counters, &ev);

	if (c)
		*c += 1;
}

/* The base header with IHL 5 and the new total length, checksum recomputed. */
static __always_inline int strip_options(struct __sk_buff *skb, __u32 hlen)
{
	struct iphdr ip;
	__u32 optlen = hlen - sizeof(ip);
	__s64 sum;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return -1;
	ip.ihl = 5;
	ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) - optlen);
	ip.check = 0;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0);
	if (sum < 0)
		return -1;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip.check = ~sum & 0xffff;
	/* the room right after the base header goes: that is where the options are */
	if (bpf_skb_adjust_room(skb, -(__s32)optlen, BPF_ADJ_ROOM_NET, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0))
		return -1;
	return 0;
}

/* Whether an IPv6 next header value names an extension header (RFC 8200 4.1,
 * the IANA list of IPv6 extension header types). */
static __always_inline int ipv6_ext_header(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* hop-by-hop options */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* authentication */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
	case 253: /* experimental */
	case 254:
		return 1;
	}
	return 0;
}

/* An IPv6 frame on a port that drops extension headers: its verdict. */
static __always_inline int fabric_ipv6(struct __sk_buff *skb, const struct fabric_port *port,
				       int pass)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return pass;
	if ((port->flags & FABRIC_F_DROP_IPV6_EXT) && ipv6_ext_header(ip6->nexthdr)) {
		fcount(FEV_IPV6_EXT_DROPPED);
		return TC_ACT_SHOT;
	}
	fcount(FEV_PASS);
	return pass;
}

/* What the port's settings do to one frame; ``pass`` is the verdict of a frame let
 * through (TC_ACT_OK at the fabric, TC_ACT_UNSPEC on a host: its next filter runs). */
static __always_inline int fabric_port_run(struct __sk_buff *skb, int pass)
{
	__u32 ifindex = skb->ifindex;
	struct fabric_port *port = bpf_map_lookup_elem(&fabric_ports, &ifindex);
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 hlen;

	if (!port)
		return pass;
	if (port->loss && bpf_get_prandom_u32() < port->loss) {
		fcount(FEV_LOST);
		return TC_ACT_SHOT;
	}
	/* the IP header, options included, in the linear part */
	bpf_skb_pull_data(skb, skb->len < ETH_HLEN + IPV4_MAX_HLEN ? skb->len
							   : ETH_HLEN + IPV4_MAX_HLEN);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return pass;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return fabric_ipv6(skb, port, pass);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return pass;

	if (port->flags & FABRIC_F_SRC_DST_CHECK) {
		__be32 src = ip->saddr;

		if (src != port->node_addr &&
		    !(port->pod_mask && (src & port->pod_mask) == port->pod_net)) {
			fcount(FEV_SRC_DST_DROPPED);
			return TC_ACT_SHOT;
		}
	}
	hlen = ip->ihl * 4;
	if ((port->flags & FABRIC_F_STRIP_OPTIONS) && hlen > sizeof(*ip) && hlen <= IPV4_MAX_HLEN &&
	    bpf_ntohs(ip->tot_len) >= hlen) {
		if (strip_options(skb, hlen)) {
			fcount(FEV_STRIP_FAILED);
			return TC_ACT_SHOT;
		}
		fcount(FEV_STRIPPED);
		return pass;
	}
	fcount(FEV_PASS);
	return pass;
}

SEC("tc")
int fabric_from_node(struct __sk_buff *skb)
{
	return fabric_port_run(skb, TC_ACT_OK);
}

SEC("tc")
int fabric_on_host(struct __sk_buff *skb)
{
	return fabric_port_run(skb, TC_ACT_UNSPEC);
}
