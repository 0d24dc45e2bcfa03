/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP and UDP header constants.
 */
#ifndef DSRLAB_LIB_L4_H
#define DSRLAB_LIB_L4_H

#include <linux/types.h>

#define TCP_FLAG_FIN_BIT 0x01
#define TCP_FLAG_SYN_BIT 0x02
#define TCP_FLAG_ACK_BIT 0x10

#endif /* DSRLAB_LIB_L4_H */
