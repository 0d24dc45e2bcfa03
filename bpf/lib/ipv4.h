/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv4 header constants, defined once for every program of bpf/ (dsr.c,
 * fabric.c): field bits, header lengths and the offsets of the header's
 * fields in an Ethernet frame.
 */
#ifndef DSRLAB_LIB_IPV4_H
#define DSRLAB_LIB_IPV4_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <stddef.h>

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPV4_BASE_LEN 20
#define IPV4_MAX_HLEN 60

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))

#endif /* DSRLAB_LIB_IPV4_H */
