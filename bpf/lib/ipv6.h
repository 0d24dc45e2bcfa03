/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv6 header constants, defined once for every program of bpf/: the fixed
 * header's length, the extension headers' next-header values and the
 * offsets of the header's fields in an Ethernet frame.
 */
#ifndef DSRLAB_LIB_IPV6_H
#define DSRLAB_LIB_IPV6_H

#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <stddef.h>

#define IPV6_HLEN 40 /* the fixed header; extension headers follow it */

/* next-header values of the extension headers (RFC 8200) */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60

#define IP6_PLEN_OFF (ETH_HLEN + offsetof(struct ipv6hdr, payload_len))
#define IP6_NEXTHDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, nexthdr))
#define IP6_HOPLIMIT_OFF (ETH_HLEN + offsetof(struct ipv6hdr, hop_limit))
#define IP6_SADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, saddr))
#define IP6_DADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, daddr))

#endif /* DSRLAB_LIB_IPV6_H */
