-- dsr_option.lua: Wireshark/tshark post-dissector for Cilium's DSR options:
-- the IPv4 option (0x9a), the IPv6 Destination Option (0x1b) and the Geneve
-- option (class 0x014b, type 0x81) of Geneve dispatch.
--
-- Cilium (loadBalancer.mode=dsr, dispatch "opt") adds an 8-byte IPv4 option
-- to the DNATed SYN (TCP) or to every datagram (UDP) it forwards to a
-- backend: type 0x9a, length 8, a 16-bit port, a 32-bit address. Wireshark
-- 4.0 shows it as "Unknown (0x9a)" with no field at all (even
-- ip.opt.type == 0x9a matches nothing). This script decodes it as the
-- service address and port, as filterable fields.
--
-- Byte order: Cilium 1.13-1.15 writes each field byte-swapped ("host" order,
-- on little-endian nodes), so 172.18.0.2:32000 is 9a 08 00 7d 02 00 12 ac;
-- "network" order would be 9a 08 7d 00 ac 12 00 02. Both readings are shown:
-- the plausible one as dsropt.service*, the other as dsropt.alt.*. The
-- preference dsropt.order (auto|host|network) forces one reading:
--   tshark -o dsropt.order:network ...
--
-- IPv6 (Cilium's IPv6 DSR): a Destination Options header right after the
-- IPv6 header whose option 0x1b (length 20) holds the 16-byte service
-- address, the port and 2 bytes of padding, all in network order; Wireshark
-- 4.0 shows it as "Unknown IPv6 Option (27)".
-- Geneve dispatch (Cilium >= 1.14): the DNATed packet travels encapsulated
-- (UDP 6081) to the backend's node with an option of class 0x014b, type
-- 0x81, holding the service address and port (2 words of data for IPv4, 5
-- for IPv6), network order; Wireshark 4.0 shows it as "Unknown".
-- Both show as "DSR [200::]:80" (IPv4 in Geneve: "DSR 172.18.0.2:32000") in
-- the Info column, with dsropt.dispatch (opt|geneve) and dsropt.family.
--
-- The protocol is "dsropt": "dsr" is taken by Dynamic Source Routing.
--
-- Load it:   tshark -X lua_script:/path/to/dsr_option.lua -Y dsropt
-- or copy it into the personal Lua plugins folder (tshark -G folders,
-- "Personal Lua Plugins", e.g. ~/.local/lib/wireshark/plugins/).
-- `dsrlab wireshark` prints both for the installed copy.
--
-- Fields:
--   dsropt                  the option is present (at any position)
--   dsropt.service          "ip:port" (string), the chosen reading
--   dsropt.service.ip       IPv4 address
--   dsropt.service.port     uint16
--   dsropt.order            "host" or "network": the chosen reading's order
--   dsropt.alt.service, dsropt.alt.ip, dsropt.alt.port, dsropt.alt.order
--                           the other reading
--   dsropt.first            true if it is the first IPv4 option (the only
--                           position a Cilium backend reads)
--   dsropt.raw              the 8 option bytes (IPv6, Geneve: the option's)
--   dsropt.service.ipv6     IPv6 address (IPv6 option, IPv6 in Geneve)
--   dsropt.dispatch         "opt" (an IP option) or "geneve"
--   dsropt.family           4 or 6: the service's address family
-- Keep the "auto" rule in step with lab/review.py (plausible_order).

local DSR_TYPE = 0x9a
local DSR_LEN = 8

local dsr = Proto("dsropt", "Cilium DSR IPv4 option")

local pf_service   = ProtoField.string("dsropt.service", "Service")
local pf_ip        = ProtoField.ipv4("dsropt.service.ip", "Service address")
local pf_port      = ProtoField.uint16("dsropt.service.port", "Service port", base.DEC)
local pf_order     = ProtoField.string("dsropt.order", "Byte order")
local pf_alt       = ProtoField.string("dsropt.alt.service", "Other reading")
local pf_alt_ip    = ProtoField.ipv4("dsropt.alt.ip", "Address")
local pf_alt_port  = ProtoField.uint16("dsropt.alt.port", "Port", base.DEC)
local pf_alt_order = ProtoField.string("dsropt.alt.order", "Byte order")
local pf_first     = ProtoField.bool("dsropt.first", "First IPv4 option (read by the backend)")
local pf_raw       = ProtoField.bytes("dsropt.raw", "Option bytes")
local pf_ip6       = ProtoField.ipv6("dsropt.service.ipv6", "Service address (IPv6)")
local pf_dispatch  = ProtoField.string("dsropt.dispatch", "Dispatch")
local pf_family    = ProtoField.uint8("dsropt.family", "Address family", base.DEC)

dsr.fields = { pf_service, pf_ip, pf_port, pf_order, pf_alt, pf_alt_ip, pf_alt_port,
               pf_alt_order, pf_first, pf_raw, pf_ip6, pf_dispatch, pf_family }

local OPT6_TYPE, OPT6_LEN = 0x1b, 20
local GENEVE_CLASS, GENEVE_TYPE = 0x014b, 0x81

local ex_not_first = ProtoExpert.new("dsropt.not_first.expert",
    "DSR option is not the first IPv4 option: a Cilium backend does not read it",
    expert.group.PROTOCOL, expert.severity.WARN)
local ex_bad_len = ProtoExpert.new("dsropt.bad_len.expert",
    "Option type 0x9a with a length other than 8: not a Cilium DSR option",
    expert.group.MALFORMED, expert.severity.WARN)
dsr.experts = { ex_not_first, ex_bad_len }

local ORDER_AUTO, ORDER_HOST, ORDER_NETWORK = 1, 2, 3
dsr.prefs.order = Pref.enum("Byte order", ORDER_AUTO,
    "How to read the port and address: auto (the plausible reading), host "
    .. "(byte-swapped, what Cilium 1.13-1.15 writes) or network",
    { { 1, "auto", ORDER_AUTO }, { 2, "host", ORDER_HOST },
      { 3, "network", ORDER_NETWORK } },
    false)

local f_ip = Field.new("ip")
local f_dstopts = Field.new("ipv6.dstopts")
local f_geneve_opt = Field.new("geneve.option")

local function dotted(a, b, c, d)
    return string.format("%d.%d.%d.%d", a, b, c, d)
end

-- How plausible (ip bytes a.b.c.d, port) is as a service: same rule as
-- lab/review.py plausible_order().
local function score(a, b, c, d, port)
    local s = 0
    if a == 10 or (a == 172 and b >= 16 and b <= 31) or (a == 192 and b == 168)
        or (a == 100 and b >= 64 and b <= 127) then
        s = s + 2
    end
    if a == 0 or a == 127 or a >= 224 then s = s - 3 end
    if d == 0 or d == 255 then s = s - 1 end
    if port == 0 then s = s - 3 end
    if port >= 30000 and port <= 32767 then s = s + 1 end
    if port >= 1 and port <= 1023 then s = s + 1 end
    return s
end

-- Offset of the DSR option inside the IPv4 header tvb, whether it is the
-- first option, and whether a 0x9a option with a bad length was seen.
local function find_option(hdr, hlen)
    local off = 20
    local first = true
    while off < hlen do
        local t = hdr(off, 1):uint()
        if t == 0 then return nil end            -- end of options list
        if t == 1 then                           -- no-operation
            off = off + 1
        else
            if off + 1 >= hlen then return nil end
            local l = hdr(off + 1, 1):uint()
            if t == DSR_TYPE then
                if l == DSR_LEN and off + DSR_LEN <= hlen then
                    return off, first, false
                end
                return off, first, true
            end
            if l < 2 then return nil end         -- malformed, stop walking
            off = off + l
        end
        first = false
    end
    return nil
end

-- The address and port items of one reading: host order is every field
-- byte-swapped, i.e. read little-endian.
local function add_reading(tree, opt, host_order, f_addr, f_port)
    if host_order then
        tree:add_le(f_addr, opt(4, 4))
        tree:add_le(f_port, opt(2, 2))
    else
        tree:add(f_addr, opt(4, 4))
        tree:add(f_port, opt(2, 2))
    end
end

-- One service carried in network order (IPv6 option, Geneve option): the
-- subtree, its fields, the Info column. ``data`` starts at the address.
local function add_carrier(tree, pinfo, whole, data, six, dispatch, what)
    local alen = six and 16 or 4
    local port = data(alen, 2):uint()
    local addr = six and tostring(data(0, 16):ipv6()) or tostring(data(0, 4):ipv4())
    local svc = six and ("[" .. addr .. "]:" .. port) or (addr .. ":" .. port)
    local st = tree:add(dsr, whole, string.format("Cilium DSR %s: service %s", what, svc))
    st:add(pf_service, data(0, alen + 2), svc)
    if six then
        st:add(pf_ip6, data(0, 16))
    else
        st:add(pf_ip, data(0, 4))
    end
    st:add(pf_port, data(alen, 2))
    st:add(pf_dispatch, whole, dispatch)
    st:add(pf_family, whole, six and 6 or 4)
    st:add(pf_raw, whole)
    pinfo.cols.info:append(" [DSR " .. svc .. "]")
end

-- The DSR option in each IPv6 Destination Options header (Pad1/PadN skipped).
local function dissect_ipv6(pinfo, tree)
    for _, fi in ipairs({ f_dstopts() }) do
        local rng = fi.range
        if rng ~= nil and rng:len() >= 8 then
            local ext = rng:tvb()
            local off = 2
            while off + 2 <= ext:len() do
                local t = ext(off, 1):uint()
                if t == 0 then
                    off = off + 1
                else
                    local l = ext(off + 1, 1):uint()
                    if t == OPT6_TYPE and l == OPT6_LEN and off + 2 + l <= ext:len() then
                        add_carrier(tree, pinfo, ext(off, 2 + l), ext(off + 2, l), true, "opt",
                                    "IPv6 option 0x1b")
                        break
                    end
                    off = off + 2 + l
                end
            end
        end
    end
end

-- Cilium's option among the Geneve options (2 words: IPv4, 5 words: IPv6).
local function dissect_geneve(pinfo, tree)
    for _, fi in ipairs({ f_geneve_opt() }) do
        local rng = fi.range
        if rng ~= nil and rng:len() >= 12 then
            local opt = rng:tvb()
            local words = opt(3, 1):uint() % 32
            if opt(0, 2):uint() == GENEVE_CLASS and opt(2, 1):uint() == GENEVE_TYPE
                and (words == 2 or words == 5) and 4 + words * 4 <= opt:len() then
                add_carrier(tree, pinfo, opt(0, 4 + words * 4), opt(4, words * 4), words == 5,
                            "geneve", "Geneve option")
            end
        end
    end
end

function dsr.dissector(tvb, pinfo, tree)
    dissect_geneve(pinfo, tree)
    dissect_ipv6(pinfo, tree)
    local ips = { f_ip() }
    for _, fi in ipairs(ips) do
        local rng = fi.range
        if rng ~= nil and rng:len() >= 28 then
            local hdr = rng:tvb()
            local v_ihl = hdr(0, 1):uint()
            local hlen = (v_ihl % 16) * 4
            if math.floor(v_ihl / 16) == 4 and hlen >= 28 and hlen <= hdr:len() then
                local off, first, bad = find_option(hdr, hlen)
                if off ~= nil then
                    local opt = hdr(off, bad and math.min(2, hlen - off) or DSR_LEN)
                    if bad then
                        local st = tree:add(dsr, opt, "Cilium DSR option: type 0x9a, bad length")
                        st:add_proto_expert_info(ex_bad_len)
                    else
                        -- host order: every field byte-swapped
                        local h_port = opt(2, 2):le_uint()
                        local h = { opt(7, 1):uint(), opt(6, 1):uint(), opt(5, 1):uint(),
                                    opt(4, 1):uint() }
                        local n_port = opt(2, 2):uint()
                        local n = { opt(4, 1):uint(), opt(5, 1):uint(), opt(6, 1):uint(),
                                    opt(7, 1):uint() }
                        local host_first
                        if dsr.prefs.order == ORDER_HOST then
                            host_first = true
                        elseif dsr.prefs.order == ORDER_NETWORK then
                            host_first = false
                        else
                            host_first = score(h[1], h[2], h[3], h[4], h_port)
                                >= score(n[1], n[2], n[3], n[4], n_port)
                        end
                        local h_svc = dotted(h[1], h[2], h[3], h[4]) .. ":" .. h_port
                        local n_svc = dotted(n[1], n[2], n[3], n[4]) .. ":" .. n_port
                        local svc, alt, order, alt_order
                        if host_first then
                            svc, alt, order, alt_order = h_svc, n_svc, "host", "network"
                        else
                            svc, alt, order, alt_order = n_svc, h_svc, "network", "host"
                        end
                        local st = tree:add(dsr, opt, string.format(
                            "Cilium DSR option: service %s (%s byte order)", svc, order))
                        st:add(pf_service, opt(2, 6), svc)
                        add_reading(st, opt, host_first, pf_ip, pf_port)
                        st:add(pf_order, opt(2, 6), order)
                        local at = st:add(pf_alt, opt(2, 6), alt)
                        at:append_text(string.format(" (%s byte order)", alt_order))
                        add_reading(at, opt, not host_first, pf_alt_ip, pf_alt_port)
                        at:add(pf_alt_order, opt(2, 6), alt_order)
                        local fit = st:add(pf_first, opt(0, 1), first)
                        if not first then
                            fit:add_proto_expert_info(ex_not_first)
                        end
                        st:add(pf_raw, opt)
                        st:add(pf_dispatch, opt, "opt")
                        st:add(pf_family, opt, 4)
                        pinfo.cols.info:append(" [DSR " .. svc .. "]")
                    end
                end
            end
        end
    end
end

register_postdissector(dsr)
