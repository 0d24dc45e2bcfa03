/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Checksum arithmetic.
 */
#ifndef DSRLAB_LIB_CSUM_H
#define DSRLAB_LIB_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold32(__s64 partial)
{
	__u32 sum = (__u32)partial;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* DSRLAB_LIB_CSUM_H */
