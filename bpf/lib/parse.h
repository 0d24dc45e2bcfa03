/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Parsing: Ethernet + IPv4 + TCP/UDP (and IPv4 fragments) into struct pkt,
 * validated, never written.
 */
#ifndef DSRLAB_LIB_PARSE_H
#define DSRLAB_LIB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "ipv4.h"
#include "ipv6.h"
#include "l4.h"

/* enough for Ethernet + the largest IPv4 header + a TCP base header */
#define PULL_LEN (ETH_HLEN + IPV4_MAX_HLEN + 20)

/* What parse() learned about an IPv4 TCP/UDP packet. */
struct pkt {
	__u32 hlen;    /* IPv4 header length in bytes (20..60) */
	__u32 tot_len; /* IPv4 total length, host order */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 ttl;
	__u8 tos;
	__u8 frag; /* FRAG_NONE, FRAG_FIRST or FRAG_LATER (no L4 header: ports from dsr_frags) */
};

enum { FRAG_NONE = 0, FRAG_FIRST = 1, FRAG_LATER = 2 };

enum {
	PARSE_L4 = 0,   /* IPv4 TCP/UDP, struct pkt filled */
	PARSE_PASS = 1, /* not ours: non-IP, a later fragment unknown, other L4 protocol */
	PARSE_IPV6 = 2, /* an IPv6 frame: parse6() is the one to read it */
};

/*
 * The ports (and TCP flags) of the TCP or UDP header at l4, hlen bytes into
 * an unfragmented IPv4 packet of tot bytes. PARSE_L4, PARSE_PASS for other
 * protocols, or -DROP_TRUNCATED_L4.
 */
static __always_inline int parse_ports(void *l4, __u32 hlen, __u32 tot, void *data_end,
				       struct pkt *p)
{
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if (tot < hlen + sizeof(*tcp) || (void *)(tcp + 1) > data_end)
			return -DROP_TRUNCATED_L4;
		p->sport = tcp->source;
		p->dport = tcp->dest;
		p->tcp_flags = ((__u8 *)tcp)[13];
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if (tot < hlen + sizeof(*udp) || (void *)(udp + 1) > data_end)
			return -DROP_TRUNCATED_L4;
		p->sport = udp->source;
		p->dport = udp->dest;
	} else {
		count(EV_PASS_OTHER_PROTO);
		return PARSE_PASS;
	}
	return PARSE_L4;
}

/*
 * A fragment (MF set or an offset). The first fragment is parsed as a whole
 * packet would be (its L4 header must be there: a first fragment too short
 * for it is dropped, as RFC 1858 advises), so it is translated like one;
 * tracked, its ports are remembered. A later fragment gets them from
 * dsr_frags (PARSE_L4 with p->frag = FRAG_LATER, no TCP flags) when its first
 * fragment was seen here. As Cilium's (lb4_extract_tuple, ipv4_load_l4_ports),
 * a fragment that cannot be placed is dropped: any TCP/UDP fragment when
 * tracking is off (-DROP_FRAG_NOSUPPORT), a later one whose first was not
 * seen when it is on (-DROP_FRAG_NOT_FOUND).
 */
static __always_inline int parse_fragment(struct iphdr *ip, __u32 hlen, __u32 tot,
					  void *data_end, struct pkt *p)
{
	struct dsr_frag_key fk = {
		.saddr = ip->saddr, .daddr = ip->daddr, .id = ip->id, .proto = ip->protocol,
	};
	struct dsr_frag_val fv, *found;
	int ret;

	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) {
		count(EV_PASS_FRAGMENT);
		return PARSE_PASS;
	}
	if (!fragments_tracked())
		return -DROP_FRAG_NOSUPPORT;
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		found = bpf_map_lookup_elem(&dsr_frags, &fk);
		if (!found)
			return -DROP_FRAG_NOT_FOUND;
		p->sport = found->sport;
		p->dport = found->dport;
		p->frag = FRAG_LATER;
		count(EV_FRAG_FOUND);
		return PARSE_L4;
	}
	ret = parse_ports((void *)ip + hlen, hlen, tot, data_end, p);
	if (ret != PARSE_L4)
		return ret;
	p->frag = FRAG_FIRST;
	fv.sport = p->sport;
	fv.dport = p->dport;
	if (!bpf_map_update_elem(&dsr_frags, &fk, &fv, BPF_ANY))
		count(EV_FRAG_TRACKED);
	return PARSE_L4;
}

/*
 * Validate and parse Ethernet + IPv4 + TCP/UDP. Returns PARSE_L4,
 * PARSE_PASS, or a negative drop reason. Never writes to the packet.
 */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 len = skb->len;
	__u32 want = len < PULL_LEN ? len : PULL_LEN;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 hlen, tot;

	if (data + want > data_end) {
		/* headers not linear (or the packet is short): pull what exists */
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	eth = data;
	if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IPV6))
		return PARSE_IPV6;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) {
		count(EV_PASS_NOT_IPV4);
		return PARSE_PASS;
	}
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -DROP_TRUNCATED_IP;
	if (ip->version != 4)
		return -DROP_BAD_VERSION;
	hlen = ip->ihl * 4;
	if (hlen < IPV4_BASE_LEN)
		return -DROP_BAD_IHL;
	tot = bpf_ntohs(ip->tot_len);
	if (hlen > tot)
		return -DROP_BAD_IHL;
	if (tot + ETH_HLEN > len)
		return -DROP_BAD_TOT_LEN;
	if ((void *)ip + hlen > data_end)
		return -DROP_TRUNCATED_IP;

	p->hlen = hlen;
	p->tot_len = tot;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tos = ip->tos;

	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return parse_fragment(ip, hlen, tot, data_end, p);

	return parse_ports((void *)ip + hlen, hlen, tot, data_end, p);
}

/* --- IPv6 --------------------------------------------------------------- */

/* What parse6() learned about an IPv6 TCP/UDP packet. */
struct pkt6 {
	union v6addr saddr;
	union v6addr daddr;
	union v6addr opt_addr; /* dsr_ext: the service the extension names */
	__u32 payload_len;     /* host order */
	__u32 l4_off;          /* the L4 header, from the IPv6 header's start */
	__be32 word0;          /* version, traffic class, flow label */
	__be16 sport;
	__be16 dport;
	__be16 opt_port;       /* dsr_ext: the service's port */
	__u8 proto;            /* the L4 protocol (TCP or UDP) */
	__u8 tcp_flags;
	__u8 hop_limit;
	__u8 dsr_ext;          /* the first extension header is the DSR one */
	__u8 exthdr;           /* other extension headers before the L4 header */
};

#define IPV6_MAX_EXT 4 /* extension headers walked to find the ports */

/*
 * The ports (and TCP flags) of the TCP/UDP header l4_off bytes into the IPv6
 * packet. PARSE_L4, PARSE_PASS for another protocol, or -DROP_TRUNCATED_L4
 * when the header is not inside the payload.
 */
static __always_inline int parse6_ports(struct __sk_buff *skb, struct pkt6 *p)
{
	__u32 at = ETH_HLEN + p->l4_off, end = IPV6_HLEN + p->payload_len;
	__u8 l4[14];

	if (p->proto == IPPROTO_TCP) {
		if (p->l4_off + sizeof(struct tcphdr) > end ||
		    bpf_skb_load_bytes(skb, at, l4, 14))
			return -DROP_TRUNCATED_L4;
		p->tcp_flags = l4[13];
	} else if (p->proto == IPPROTO_UDP) {
		if (p->l4_off + sizeof(struct udphdr) > end ||
		    bpf_skb_load_bytes(skb, at, l4, 4))
			return -DROP_TRUNCATED_L4;
	} else {
		count(EV_PASS_OTHER_PROTO);
		return PARSE_PASS;
	}
	__builtin_memcpy(&p->sport, &l4[0], 2);
	__builtin_memcpy(&p->dport, &l4[2], 2);
	return PARSE_L4;
}

/*
 * Walk the extension headers after the IPv6 header (hop-by-hop, routing,
 * destination options, fragment, authentication; at most IPV6_MAX_EXT) to
 * the TCP/UDP header, so a service can be recognised (and refused) by its
 * ports. A later fragment (no L4 header), anything else or a longer chain:
 * PARSE_PASS. A chain that runs out of the payload: -DROP_TRUNCATED_L4.
 */
static __always_inline int parse6_exthdrs(struct __sk_buff *skb, struct pkt6 *p, __u8 nh)
{
	__u32 off = IPV6_HLEN;
	__u8 h[4];
	int i;

#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT; i++) {
		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP) {
			p->proto = nh;
			p->l4_off = off;
			p->exthdr = 1;
			return parse6_ports(skb, p);
		}
		if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING && nh != NEXTHDR_DEST &&
		    nh != NEXTHDR_FRAGMENT && nh != NEXTHDR_AUTH) {
			count(EV_PASS_OTHER_PROTO);
			return PARSE_PASS;
		}
		if (off + 8 > IPV6_HLEN + p->payload_len ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + off, h, sizeof(h)))
			return -DROP_TRUNCATED_L4;
		if (nh == NEXTHDR_FRAGMENT) {
			/* offset (13 bits) in h[2..3]: a later fragment has no ports */
			if ((h[2] << 8 | h[3]) & 0xfff8) {
				count(EV_PASS_FRAGMENT);
				return PARSE_PASS;
			}
			off += 8;
		} else if (nh == NEXTHDR_AUTH) {
			off += ((__u32)h[1] + 2) * 4;
		} else {
			off += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	if (nh == IPPROTO_TCP || nh == IPPROTO_UDP) {
		p->proto = nh;
		p->l4_off = off;
		p->exthdr = 1;
		return parse6_ports(skb, p);
	}
	count(EV_PASS_IPV6_EXTHDR);
	return PARSE_PASS;
}

/*
 * Validate and parse Ethernet + IPv6 (+ the DSR extension) + TCP/UDP with
 * bpf_skb_load_bytes (nothing needs to be linear). PARSE_L4 (p filled),
 * PARSE_PASS, or a negative drop reason: a header cut short, a version
 * other than 6, a payload length beyond the frame. Never writes.
 */
static __always_inline int parse6(struct __sk_buff *skb, struct pkt6 *p)
{
	struct ipv6hdr ip6;
	struct dsr_ext6 ext;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return -DROP_TRUNCATED_IP;
	if (ip6.version != 6)
		return -DROP_BAD_VERSION;
	p->payload_len = bpf_ntohs(ip6.payload_len);
	if (ETH_HLEN + IPV6_HLEN + p->payload_len > skb->len)
		return -DROP_BAD_TOT_LEN;
	__builtin_memcpy(&p->word0, &ip6, sizeof(p->word0));
	__builtin_memcpy(&p->saddr, &ip6.saddr, sizeof(p->saddr));
	__builtin_memcpy(&p->daddr, &ip6.daddr, sizeof(p->daddr));
	p->hop_limit = ip6.hop_limit;
	p->l4_off = IPV6_HLEN;
	p->proto = ip6.nexthdr;

	if (ip6.nexthdr == NEXTHDR_DEST && p->payload_len >= DSR6_EXT_LEN &&
	    !bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN, &ext, sizeof(ext)) &&
	    ext.hdrlen == DSR6_EXT_HDRLEN && ext.opt_type == DSR6_OPT_TYPE &&
	    ext.opt_len == DSR6_OPT_LEN) {
		p->dsr_ext = 1;
		p->opt_addr = ext.addr;
		p->opt_port = ext.port;
		p->proto = ext.nexthdr;
		p->l4_off = IPV6_HLEN + DSR6_EXT_LEN;
		return parse6_ports(skb, p);
	}
	if (ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP)
		return parse6_ports(skb, p);
	return parse6_exthdrs(skb, p, ip6.nexthdr);
}

#endif /* DSRLAB_LIB_PARSE_H */
