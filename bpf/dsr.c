// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dsrlab's own Cilium-style DSR NodePort datapath, as two tc programs.
 *
 *   dsr_from_netdev  node eth0 ingress
 *     - service path: (daddr, dport, proto) is a service -> pick a backend
 *       (random, remembered in lb_ct), DNAT to it keeping the client's
 *       source; local backend: plain DNAT + dsr_revnat entry; remote backend
 *       of a DSR service: insert the 8-byte DSR IPv4 option on TCP SYNs and
 *       on every UDP datagram (or drop it when the option does not fit:
 *       header over 60 bytes, tot_len + 8 over the configured MTU or over
 *       65535); then FIB lookup + redirect.
 *     - backend path: a TCP SYN or UDP datagram whose first IP option is the
 *       DSR option teaches dsr_revnat (client, backend) -> service; a SYN
 *       without it clears that flow's entry. The packet is never changed.
 *     - Geneve dispatch (lib/geneve.h): a DSR flow's packets leave in
 *       Geneve to the backend's node instead (the TLV in place of the
 *       option), and Geneve to this node is checked, taught from, stripped.
 *   dsr_to_netdev    node eth0 egress
 *     - replies matching dsr_revnat get their source rewritten to the
 *       service address and port.
 *
 * A first fragment is handled as the whole datagram (it has the ports);
 * with fragment tracking (CFG_F_FRAGMENTS) its ports are remembered in
 * dsr_frags and the later fragments are translated with it
 * (parse_fragment()). As Cilium's nodeport path, both hooks drop a TCP/UDP
 * fragment they cannot place: any, with tracking off; a later one whose
 * first fragment was not seen, with it on.
 *
 * IPv6 (lib/nodeport6.h) takes the same paths with its own maps (lb6_*,
 * dsr6_revnat): the LB DNATs keeping the client's address and, for a remote
 * backend of a DSR service, inserts a 24-byte Destination Options header
 * (option 0x1B: service address and port) right after the IPv6 header on
 * TCP SYNs and every UDP datagram, payload length + 24, L4 checksum fixed
 * for the address change, hop limit - 1, then FIB lookup + redirect. Too
 * big for it (40 + payload + 24 over the MTU): ICMPv6 Packet Too Big with
 * MTU - 24 (DSR ICMP errors on) or DROP_FRAG_NEEDED. The backend's node
 * learns dsr6_revnat from a SYN / UDP datagram whose first extension header
 * is that one (the packet is delivered unchanged; option type 0x1B's top
 * bits 00 make the pod's kernel skip it), and its replies leave from the
 * service.
 *
 * IPv6 extension headers, the rule: the LB adds its own header and reads
 * no other. An IPv6 packet whose first next header is not TCP/UDP (nor the
 * DSR Destination Options) has its chain walked (hop-by-hop, routing,
 * destination options, fragment, authentication; up to 4 headers) to its
 * ports: addressed to a service it is dropped, DROP_IPV6_EXTHDR (counted),
 * since translating it would mean rewriting headers this datapath does not
 * model (a routing header's addresses, a fragment's reassembly); to anything
 * else it passes untouched (EV_PASS_IPV6_EXTHDR). A later fragment (no
 * ports) or a longer chain passes untouched. Malformed IPv6 at ingress
 * (header cut short, version not 6, payload length beyond the frame, an L4
 * header or extension chain beyond the payload) is dropped with its reason;
 * at egress it passes untouched.
 *
 * Drops set skb->cb[0] to the reason (enum dsr_event) and count it in
 * dsr_counters; redirects leave the target ifindex in skb->cb[1].
 * Backend choice is random unless dsr_config asks for a seeded flow hash.
 * Packet pointers are only used while parsing; every write goes through
 * helpers (store_bytes / csum_replace / adjust_room).
 *
 * The parts live in lib/, by concern: parse.h (headers into struct pkt),
 * select.h (backend choice), nat.h (rewrites and checksums), dsr_opt.h (the
 * option), icmp.h (DSR ICMP errors), fib.h (forwarding), lb.h (the service
 * path), backend.h (the backend path); ipv4.h holds the header constants,
 * maps.h the maps, common.h counting, drops and the configuration.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_helpers.h>

#include "dsr.h"
#include "lib/backend.h"
#include "lib/common.h"
#include "lib/geneve.h"
#include "lib/lb.h"
#include "lib/nodeport6.h"
#include "lib/parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int dsr_from_netdev(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct lb_svc_key sk = {};
	struct lb_svc_val *svc;
	bool hit = false, tunnelled = false;
	int ret;

	ret = parse(skb, &p);
	if (ret == PARSE_IPV6)
		return from_netdev6(skb);
	if (ret < 0)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;
	ret = geneve_rx(skb, &p, &tunnelled);
	if (tunnelled)
		return ret;

	svc = lookup_service(&p, &sk);
	if (svc)
		return handle_service(skb, &p, &sk, svc);
	ret = snat_reverse(skb, &p, &hit);
	if (hit)
		return ret;
	return handle_backend(skb, &p);
}

SEC("tc")
int dsr_to_netdev(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct dsr_revnat_key rk = {};
	int ret;

	ret = parse(skb, &p);
	if (ret == PARSE_IPV6)
		return to_netdev6(skb);
	/* a fragment that cannot be placed is dropped both ways, as Cilium's; a packet
	 * this node's stack made malformed is the stack's to answer for */
	if (ret == -DROP_FRAG_NOSUPPORT || ret == -DROP_FRAG_NOT_FOUND)
		return drop(skb, -ret);
	if (ret != PARSE_L4)
		return TC_ACT_OK;
	return revnat_reply(skb, &p, &rk);
}
