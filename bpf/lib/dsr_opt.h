/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The IPv4 DSR option: whether it fits, and inserting it.
 */
#ifndef DSRLAB_LIB_DSR_OPT_H
#define DSRLAB_LIB_DSR_OPT_H

#include "common.h"
#include "ipv4.h"
#include "parse.h"

/*
 * Insert the DSR option right after the 20-byte base header (existing
 * options move behind it): IHL += 2, tot_len += 8, IPv4 checksum fixed by
 * difference. The L4 checksum is untouched (options are not in the
 * pseudo-header). The caller checked opt_fits() (hlen + 8 <= 60,
 * tot_len + 8 within the MTU and 65535).
 */
static __always_inline int insert_dsr_opt(struct __sk_buff *skb, struct pkt *p,
					  __be32 svc_addr, __be16 svc_port)
{
	struct dsr_opt_v4 opt = { .type = DSR_OPT_TYPE, .len = DSR_OPT_LEN };
	__u8 old_w[4], new_w[4];
	__u16 new_tot = p->tot_len + DSR_OPT_LEN;
	__s64 diff;

	if (opt_network_order()) {
		opt.port = svc_port;
		opt.addr = svc_addr;
	} else {
		/* Cilium: htons/htonl of values already in network order */
		opt.port = bpf_htons(svc_port);
		opt.addr = bpf_htonl(svc_addr);
	}

	if (bpf_skb_load_bytes(skb, ETH_HLEN, old_w, sizeof(old_w)))
		return DROP_TRUNCATED_IP;
	new_w[0] = (old_w[0] & 0xf0) | (((p->hlen + DSR_OPT_LEN) / 4) & 0x0f);
	new_w[1] = old_w[1];
	new_w[2] = new_tot >> 8;
	new_w[3] = new_tot & 0xff;

	diff = bpf_csum_diff((__be32 *)old_w, sizeof(old_w), (__be32 *)new_w, sizeof(new_w), 0);
	if (diff < 0)
		return DROP_CSUM;
	diff = bpf_csum_diff(NULL, 0, (__be32 *)&opt, sizeof(opt), (__u32)diff);
	if (diff < 0)
		return DROP_CSUM;

	if (bpf_skb_adjust_room(skb, DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0))
		return DROP_ADJUST_ROOM;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, new_w, sizeof(new_w), 0))
		return DROP_STORE;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + IPV4_BASE_LEN, &opt, sizeof(opt), 0))
		return DROP_STORE;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)diff, 0))
		return DROP_CSUM;

	p->hlen += DSR_OPT_LEN;
	p->tot_len = new_tot;
	return 0;
}

/*
 * Whether the DSR option can be added to this packet; 0 or the drop reason.
 * Checked before anything is written, so a refused packet leaves unchanged
 * and leaves no CT entry behind. Too big for the MTU: DROP_FRAG_NEEDED, which
 * the caller turns into an ICMP frag-needed with DSR ICMP errors on
 * (frag_needed()) or a drop with its reason with them off; the MTU comes
 * from dsr_config (0 = no check). tot_len is a 16-bit field, so a
 * packet within 8 bytes of 65535 is refused whatever the MTU.
 */
static __always_inline int opt_fits(const struct pkt *p)
{
	struct dsr_config *cfg = config();
	__u32 grown = p->tot_len + DSR_OPT_LEN;

	if (p->hlen + DSR_OPT_LEN > IPV4_MAX_HLEN)
		return DROP_OPT_TOO_LONG;
	if (cfg && cfg->mtu && grown > cfg->mtu)
		return DROP_FRAG_NEEDED;
	if (grown > 0xffff)
		return DROP_TOT_LEN_OVERFLOW;
	return 0;
}

/* --- IPv6: the DSR extension header ------------------------------------------- */

/*
 * Whether the 24-byte extension can be added; 0 or the drop reason, checked
 * before anything is written: DROP_FRAG_NEEDED when 40 + payload + 24 is
 * over the configured MTU (the caller answers it with Packet Too Big or
 * drops it), DROP_TOT_LEN_OVERFLOW when the payload length would pass 65535.
 */
static __always_inline int ext6_fits(const struct pkt6 *p)
{
	struct dsr_config *cfg = config();
	__u32 grown = p->payload_len + DSR6_EXT_LEN;

	if (cfg && cfg->mtu && IPV6_HLEN + grown > cfg->mtu)
		return DROP_FRAG_NEEDED;
	if (grown > 0xffff)
		return DROP_TOT_LEN_OVERFLOW;
	return 0;
}

/*
 * Insert the Destination Options header right after the IPv6 header:
 * next header 60, payload length + 24. The L4 checksum is untouched (its
 * pseudo-header's length is the upper layer's, which does not change).
 */
static __always_inline int insert_dsr_ext6(struct __sk_buff *skb, struct pkt6 *p,
					   const union v6addr *svc_addr, __be16 svc_port)
{
	struct dsr_ext6 ext = {
		.nexthdr = p->proto,
		.hdrlen = DSR6_EXT_HDRLEN,
		.opt_type = DSR6_OPT_TYPE,
		.opt_len = DSR6_OPT_LEN,
		.port = svc_port,
	};
	__be16 plen = bpf_htons(p->payload_len + DSR6_EXT_LEN);
	__u8 nh = NEXTHDR_DEST;

	ext.addr = *svc_addr;
	if (bpf_skb_adjust_room(skb, DSR6_EXT_LEN, BPF_ADJ_ROOM_NET, 0))
		return DROP_ADJUST_ROOM;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + IPV6_HLEN, &ext, sizeof(ext), 0) ||
	    bpf_skb_store_bytes(skb, IP6_NEXTHDR_OFF, &nh, 1, 0) ||
	    bpf_skb_store_bytes(skb, IP6_PLEN_OFF, &plen, sizeof(plen), 0))
		return DROP_STORE;
	p->payload_len += DSR6_EXT_LEN;
	p->l4_off += DSR6_EXT_LEN;
	return 0;
}

#endif /* DSRLAB_LIB_DSR_OPT_H */
