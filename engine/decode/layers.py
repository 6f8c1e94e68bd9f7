"""Which layer to decode next: the walk over one frame is a loop over these ids (no recursion in kernels).

Every layer decoder returns the tuple (next_layer, position, selector, limit), all int64:
* next_layer: one of the ids below (DONE ends the walk);
* position: absolute buffer position where the next layer starts;
* selector: what the next layer is made of, when the id alone does not say (an EtherType for ETHERTYPE, an IP
  protocol number for UPPER, the radiotap flags for WLAN, the length of a trailing FCS to ignore for ETHERNET);
* limit: the logical end of the enclosing IP datagram (from its length field) for UPPER; it may lie past the
  captured bytes, which only bound reads.
"""

DONE = 0
ETHERNET = 1  # Ethernet II / 802.3 header
ETHERTYPE = 2  # dispatch on an EtherType (VLAN tags, MPLS, PPPoE, LLC/SNAP are peeled here)
IP_BY_VERSION = 3  # IPv4 or IPv6, chosen by the version nibble (raw IP link types, MPLS, Teredo)
IPV4 = 4
IPV6 = 5
UPPER = 6  # the payload of an IP datagram: transport protocol or tunnel
ARP = 7
WLAN = 8  # IEEE 802.11 frame

# Most layers one frame may stack (tunnels included) before the walk gives up.
MAX_LAYERS = 24
