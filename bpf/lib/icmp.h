/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * DSR ICMP errors: the IPv4 fragmentation-needed reply built in BPF.
 */
#ifndef DSRLAB_LIB_ICMP_H
#define DSRLAB_LIB_ICMP_H

#include "common.h"
#include "csum.h"
#include "ipv4.h"
#include "parse.h"

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_QUOTE_L4 8 /* the quoted packet: its IP header and 8 bytes after it */
#define ICMP_QUOTE_MAX (IPV4_MAX_HLEN + ICMP_QUOTE_L4)
#define ICMP_ERR_HDRS (IPV4_BASE_LEN + 8) /* the error's own IPv4 and ICMP headers */

struct icmp_frag_hdrs {
	struct iphdr ip;
	__u8 type;
	__u8 code;
	__sum16 check;
	__be16 unused;
	__be16 mtu;
};

/*
 * DSR ICMP errors: the packet (not yet translated, still to the service) is
 * too big for the DSR option, so it becomes the error sent back to the
 * client: ICMP destination unreachable / fragmentation needed with
 * MTU = mtu (the device MTU - 8 for the option, - the Geneve overhead with
 * Geneve dispatch), quoting the packet's IP header (options included)
 * and its first 8 L4 bytes, i.e. the service's address and port, so the
 * client's kernel finds its socket and lowers its path MTU to the service.
 * As Cilium's: outer IPv4 IHL 5, TTL 64, DF, the packet's TOS and ID,
 * source the chosen backend's address (Cilium builds it after the DNAT),
 * destination the client; MACs swapped, out of the interface it came in on.
 */
static __always_inline int reply_frag_needed(struct __sk_buff *skb, const struct pkt *p,
					     __be32 backend_addr, __u32 mtu)
{
	struct icmp_frag_hdrs h = {};
	__u8 quote[ICMP_QUOTE_MAX];
	__u8 macs[2 * ETH_ALEN];
	__u32 qlen = p->hlen + ICMP_QUOTE_L4;
	__s64 sum;

	if (qlen > ICMP_QUOTE_MAX || qlen < IPV4_BASE_LEN + ICMP_QUOTE_L4 ||
	    p->tot_len < qlen)
		return drop(skb, DROP_FRAG_NEEDED);
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, qlen) ||
	    bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return drop(skb, DROP_TRUNCATED_IP);

	h.type = ICMP_DEST_UNREACH;
	h.code = ICMP_FRAG_NEEDED;
	h.mtu = bpf_htons(mtu);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, qlen, 0);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.type, 8, (__u32)sum);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	h.check = csum_fold32(sum);

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tos = p->tos;
	h.ip.tot_len = bpf_htons(ICMP_ERR_HDRS + qlen);
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, id), &h.ip.id,
			       sizeof(h.ip.id)))
		return drop(skb, DROP_TRUNCATED_IP);
	h.ip.frag_off = bpf_htons(0x4000); /* DF */
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = backend_addr;
	h.ip.daddr = p->saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	h.ip.check = csum_fold32(sum);

	/* the packet becomes: Ethernet, the error's headers, the quote */
	if (bpf_skb_change_tail(skb, ETH_HLEN + qlen, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_adjust_room(skb, ICMP_ERR_HDRS, BPF_ADJ_ROOM_MAC, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) ||
	    bpf_skb_store_bytes(skb, 0, &macs[ETH_ALEN], ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, &macs[0], ETH_ALEN, 0))
		return drop(skb, DROP_STORE);
	count(EV_ICMP_FRAG_NEEDED);
	skb->cb[CB_REDIR_IFINDEX] = skb->ifindex;
	skb->cb[CB_REDIR_KIND] = CB_REDIR_PLAIN;
	return bpf_redirect(skb->ifindex, 0);
}

/*
 * Too big for the dispatch (overhead: the option's 8 bytes, or Geneve's): the
 * ICMP error with DSR ICMP errors on, else the drop.
 */
static __always_inline int frag_needed(struct __sk_buff *skb, const struct pkt *p,
				       __be32 backend_addr, __u32 overhead)
{
	struct dsr_config *cfg = config();

	/* a later fragment's quote would hold no ports: no socket would find it */
	if (!cfg || !(cfg->flags & CFG_F_ICMP_ERRORS) || cfg->mtu <= overhead ||
	    p->frag == FRAG_LATER)
		return drop(skb, DROP_FRAG_NEEDED);
	return reply_frag_needed(skb, p, backend_addr, cfg->mtu - overhead);
}

/* --- IPv6: Packet Too Big --------------------------------------------------- */

#define ICMPV6_PKT_TOOBIG 2
#define ICMP6_QUOTE_L4 64 /* the quote: the IPv6 header and up to 64 bytes after it */
#define ICMP6_ERR_HDRS (IPV6_HLEN + 8) /* the error's own IPv6 and ICMPv6 headers */

struct icmp6_too_big_hdrs {
	struct ipv6hdr ip;
	__u8 type;
	__u8 code;
	__sum16 check;
	__be32 mtu;
};

/* The ICMPv6 checksum's pseudo-header (RFC 8200 8.1). */
struct icmp6_pseudo {
	union v6addr saddr;
	union v6addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/*
 * DSR ICMP errors for IPv6: the packet (not yet translated, still to the
 * service) is too big for the 24-byte extension, so it becomes an ICMPv6
 * Packet Too Big (type 2, code 0) with MTU = configured MTU - 24, back to
 * the client: quoting the packet's IPv6 header and the 64 bytes after it
 * (its first 8 when the payload is shorter: the service's address and port, so the client's kernel finds its
 * socket). Outer header: the packet's traffic class and flow label, hop
 * limit 64, source the chosen backend (as the IPv4 reply), destination the
 * client; MACs swapped, out of the interface it came in on.
 */
static __always_inline int reply_pkt_too_big6(struct __sk_buff *skb, const struct pkt6 *p,
					      const union v6addr *backend_addr, __u32 mtu)
{
	struct icmp6_too_big_hdrs h = {};
	struct icmp6_pseudo ph = {};
	__u8 quote[IPV6_HLEN + ICMP6_QUOTE_L4] = {};
	__u8 macs[2 * ETH_ALEN];
	/* the whole 64 bytes when the payload has them, else its first 8 (the ports) */
	__u32 ql4 = p->payload_len >= ICMP6_QUOTE_L4 ? ICMP6_QUOTE_L4 : 8;
	__u32 qlen = IPV6_HLEN + ql4;
	__be16 plen = bpf_htons(8 + qlen);
	__s64 sum;

	if (p->payload_len < 8)
		return drop(skb, DROP_FRAG_NEEDED);
	if (bpf_skb_load_bytes(skb, ETH_HLEN, quote, IPV6_HLEN + 8) ||
	    bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return drop(skb, DROP_TRUNCATED_IP);
	if (ql4 == ICMP6_QUOTE_L4 &&
	    bpf_skb_load_bytes(skb, ETH_HLEN + IPV6_HLEN + 8, &quote[IPV6_HLEN + 8],
			       ICMP6_QUOTE_L4 - 8))
		return drop(skb, DROP_TRUNCATED_IP);

	h.type = ICMPV6_PKT_TOOBIG;
	h.mtu = bpf_htonl(mtu - DSR6_EXT_LEN);
	ph.saddr = *backend_addr;
	ph.daddr = p->saddr;
	ph.len = bpf_htonl(8 + qlen);
	ph.nexthdr = IPPROTO_ICMPV6;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)quote, qlen, 0);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), (__u32)sum);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.type, 8, (__u32)sum);
	if (sum < 0)
		return drop(skb, DROP_CSUM);
	h.check = csum_fold32(sum);

	__builtin_memcpy(&h.ip, &p->word0, sizeof(p->word0)); /* version, class, flow label */
	h.ip.payload_len = plen;
	h.ip.nexthdr = IPPROTO_ICMPV6;
	h.ip.hop_limit = 64;
	__builtin_memcpy(&h.ip.saddr, backend_addr, sizeof(h.ip.saddr));
	__builtin_memcpy(&h.ip.daddr, &p->saddr, sizeof(h.ip.daddr));

	/* the packet becomes: Ethernet, the error's headers, the quote */
	if (bpf_skb_change_tail(skb, ETH_HLEN + qlen, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_adjust_room(skb, ICMP6_ERR_HDRS, BPF_ADJ_ROOM_MAC, 0))
		return drop(skb, DROP_ADJUST_ROOM);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) ||
	    bpf_skb_store_bytes(skb, 0, &macs[ETH_ALEN], ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, &macs[0], ETH_ALEN, 0))
		return drop(skb, DROP_STORE);
	count(EV_ICMP6_PKT_TOO_BIG);
	skb->cb[CB_REDIR_IFINDEX] = skb->ifindex;
	skb->cb[CB_REDIR_KIND] = CB_REDIR_PLAIN;
	return bpf_redirect(skb->ifindex, 0);
}

/* Too big for the extension: Packet Too Big with DSR ICMP errors on, else the drop. */
static __always_inline int pkt_too_big6(struct __sk_buff *skb, const struct pkt6 *p,
					const union v6addr *backend_addr)
{
	struct dsr_config *cfg = config();

	if (!cfg || !(cfg->flags & CFG_F_ICMP_ERRORS) || cfg->mtu <= DSR6_EXT_LEN)
		return drop(skb, DROP_FRAG_NEEDED);
	return reply_pkt_too_big6(skb, p, backend_addr, cfg->mtu);
}

#endif /* DSRLAB_LIB_ICMP_H */
