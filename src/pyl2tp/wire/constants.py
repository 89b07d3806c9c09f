"""Protocol numbers from RFC 2661, RFC 3931 and the IANA L2TP registry.

Names follow the RFCs (and the Linux UAPI where the kernel names a value) so that code, logs and
the management API speak the same language as the specifications an engineer will check them
against.
"""

from __future__ import annotations

from enum import IntEnum

L2TP_PORT = 1701
IPPROTO_L2TP = 115

# First 16-bit word of a header.
FLAG_T = 0x8000  # control message
FLAG_L = 0x4000  # Length present
FLAG_S = 0x0800  # Ns/Nr present
FLAG_O = 0x0200  # Offset Size present (v2 data only)
FLAG_P = 0x0100  # priority (v2 data only)
VERSION_MASK = 0x000F

# v3 default L2-specific sublayer: |x|S|x|x|x|x|x|x| Sequence Number (24 bits) |
L2SPEC_S_BIT = 0x40000000
L2SPEC_SEQ_MASK = 0x00FFFFFF

# AVP header word: |M|H| rsvd |  Length (10 bits) |
AVP_FLAG_M = 0x8000
AVP_FLAG_H = 0x4000
AVP_RESERVED_MASK = 0x3C00
AVP_LENGTH_MASK = 0x03FF
AVP_HEADER_LEN = 6
AVP_MAX_LEN = AVP_LENGTH_MASK

VENDOR_IETF = 0
VENDOR_CISCO = 9
VENDOR_BROADBAND_FORUM = 3561


class MessageType(IntEnum):
    """Control message types (RFC 2661 §3.2, RFC 3931 §3.1, later RFCs)."""

    ZLB = -1  # pseudo type: a control message with no AVPs (v2 acknowledgement)
    SCCRQ = 1
    SCCRP = 2
    SCCCN = 3
    StopCCN = 4
    HELLO = 6
    OCRQ = 7
    OCRP = 8
    OCCN = 9
    ICRQ = 10
    ICRP = 11
    ICCN = 12
    CDN = 14
    WEN = 15
    SLI = 16
    MDMST = 17
    SRRQ = 18
    SRRP = 19
    ACK = 20
    FSQ = 21
    FSR = 22
    MSRQ = 23
    MSRP = 24
    MSE = 25
    MSI = 26
    MSEN = 27
    CSUN = 28
    CSURQ = 29


# Messages that belong to a session (a failure in one clears the session with CDN); the rest
# belong to the control connection (a failure clears it with StopCCN).
SESSION_MESSAGES = frozenset(
    {
        MessageType.OCRQ,
        MessageType.OCRP,
        MessageType.OCCN,
        MessageType.ICRQ,
        MessageType.ICRP,
        MessageType.ICCN,
        MessageType.CDN,
        MessageType.WEN,
        MessageType.SLI,
        MessageType.CSUN,
    }
)


class AvpType(IntEnum):
    """IETF attribute types (vendor id 0)."""

    MESSAGE_TYPE = 0
    RESULT_CODE = 1
    PROTOCOL_VERSION = 2
    FRAMING_CAPABILITIES = 3
    BEARER_CAPABILITIES = 4
    TIE_BREAKER = 5
    FIRMWARE_REVISION = 6
    HOST_NAME = 7
    VENDOR_NAME = 8
    ASSIGNED_TUNNEL_ID = 9
    RECEIVE_WINDOW_SIZE = 10
    CHALLENGE = 11
    Q931_CAUSE_CODE = 12
    CHALLENGE_RESPONSE = 13
    ASSIGNED_SESSION_ID = 14
    CALL_SERIAL_NUMBER = 15
    MINIMUM_BPS = 16
    MAXIMUM_BPS = 17
    BEARER_TYPE = 18
    FRAMING_TYPE = 19
    CALLED_NUMBER = 21
    CALLING_NUMBER = 22
    SUB_ADDRESS = 23
    TX_CONNECT_SPEED = 24
    PHYSICAL_CHANNEL_ID = 25
    INITIAL_RECEIVED_LCP_CONFREQ = 26
    LAST_SENT_LCP_CONFREQ = 27
    LAST_RECEIVED_LCP_CONFREQ = 28
    PROXY_AUTHEN_TYPE = 29
    PROXY_AUTHEN_NAME = 30
    PROXY_AUTHEN_CHALLENGE = 31
    PROXY_AUTHEN_ID = 32
    PROXY_AUTHEN_RESPONSE = 33
    CALL_ERRORS = 34
    ACCM = 35
    RANDOM_VECTOR = 36
    PRIVATE_GROUP_ID = 37
    RX_CONNECT_SPEED = 38
    SEQUENCING_REQUIRED = 39
    RX_MINIMUM_BPS = 40
    RX_MAXIMUM_BPS = 41
    SERVICE_CATEGORY = 42
    SERVICE_NAME = 43
    CALLING_SUB_ADDRESS = 44
    VPI_VCI_IDENTIFIER = 45
    PPP_DISCONNECT_CAUSE_CODE = 46
    CCDS = 47
    SDS = 48
    LCP_WANT_OPTIONS = 49
    LCP_ALLOW_OPTIONS = 50
    LNS_LAST_SENT_LCP_CONFREQ = 51
    LNS_LAST_RECEIVED_LCP_CONFREQ = 52
    MODEM_ON_HOLD_CAPABLE = 53
    MODEM_ON_HOLD_STATUS = 54
    PPPOE_RELAY = 55
    PPPOE_RELAY_RESPONSE_CAPABILITY = 56
    PPPOE_RELAY_FORWARD_CAPABILITY = 57
    EXTENDED_VENDOR_ID = 58
    MESSAGE_DIGEST = 59
    ROUTER_ID = 60
    ASSIGNED_CONNECTION_ID = 61
    PW_CAPABILITIES_LIST = 62
    LOCAL_SESSION_ID = 63
    REMOTE_SESSION_ID = 64
    ASSIGNED_COOKIE = 65
    REMOTE_END_ID = 66
    PW_TYPE = 68
    L2_SPECIFIC_SUBLAYER = 69
    DATA_SEQUENCING = 70
    CIRCUIT_STATUS = 71
    PREFERRED_LANGUAGE = 72
    CTRL_MSG_AUTH_NONCE = 73
    TX_CONNECT_SPEED_V3 = 74
    RX_CONNECT_SPEED_V3 = 75
    FAILOVER_CAPABILITY = 76
    TUNNEL_RECOVERY = 77
    SUGGESTED_CONTROL_SEQUENCE = 78
    FAILOVER_SESSION_STATE = 79
    MULTICAST_CAPABILITY = 80
    NEW_OUTGOING_SESSIONS = 81
    NEW_OUTGOING_SESSIONS_ACK = 82
    WITHDRAW_OUTGOING_SESSIONS = 83
    MULTICAST_PACKETS_PRIORITY = 84
    FRAME_RELAY_HEADER_LENGTH = 85
    ATM_MAX_CONCATENATED_CELLS = 86
    OAM_EMULATION_REQUIRED = 87
    ATM_ALARM_STATUS = 88
    ATTACHMENT_GROUP_IDENTIFIER = 89
    LOCAL_END_IDENTIFIER = 90
    INTERFACE_MTU = 91
    FCS_RETENTION = 92
    TUNNEL_SWITCHING_AGGREGATOR_ID = 93
    MRU = 94
    MRRU = 95
    VCCV_CAPABILITY = 96
    CONNECT_SPEED_UPDATE = 97
    CONNECT_SPEED_UPDATE_ENABLE = 98
    TDM_PSEUDOWIRE = 99
    RTP = 100
    PW_SWITCHING_POINT = 101


class StopCCNResult(IntEnum):
    """Result codes for StopCCN (RFC 2661 §4.4.2, RFC 3931 §5.4.2, RFC 3308)."""

    GENERAL_CLEAR = 1
    GENERAL_ERROR = 2
    ALREADY_EXISTS = 3
    NOT_AUTHORIZED = 4
    UNSUPPORTED_VERSION = 5
    SHUTTING_DOWN = 6
    FSM_ERROR = 7
    CCDS_MISMATCH = 8


class CDNResult(IntEnum):
    """Result codes for CDN."""

    LOST_CARRIER = 1
    GENERAL_ERROR = 2
    ADMINISTRATIVE = 3
    NO_FACILITIES_TEMPORARY = 4
    NO_FACILITIES_PERMANENT = 5
    INVALID_DESTINATION = 6
    NO_CARRIER = 7
    BUSY = 8
    NO_DIAL_TONE = 9
    TIMEOUT = 10
    NO_FRAMING = 11
    SDS_MISMATCH = 12
    LOST_TIE_BREAKER = 13
    UNSUPPORTED_PW_TYPE = 14
    SEQUENCING_WITHOUT_SUBLAYER = 15
    FSM_ERROR = 16
    LOOP_DETECTED = 26


class ErrorCode(IntEnum):
    """General error codes carried in a Result Code AVP."""

    NO_ERROR = 0
    NO_CONTROL_CONNECTION = 1
    BAD_LENGTH = 2
    BAD_VALUE = 3
    NO_RESOURCES = 4
    INVALID_SESSION_ID = 5
    VENDOR_SPECIFIC = 6
    TRY_ANOTHER = 7
    UNKNOWN_MANDATORY_AVP = 8
    TRY_ANOTHER_DIRECTED = 9


class PwType(IntEnum):
    """Pseudowire types (IANA; the Linux ``enum l2tp_pwtype`` uses the same numbers)."""

    NONE = 0x0000
    FRAME_RELAY_DLCI = 0x0001
    ATM_AAL5 = 0x0002
    ATM_CELL_PORT = 0x0003
    ETH_VLAN = 0x0004
    ETH = 0x0005
    HDLC = 0x0006
    PPP = 0x0007
    PPP_AC = 0x0008
    IP = 0x000B


class L2SpecType(IntEnum):
    """L2-Specific Sublayer types (AVP 69 and ``L2TP_ATTR_L2SPEC_TYPE``)."""

    NONE = 0
    DEFAULT = 1
    ATM = 2
    MPT = 3
    PSP = 4


class DataSequencing(IntEnum):
    """Data Sequencing levels (AVP 70)."""

    NONE = 0
    NON_IP = 1
    ALL = 2


class EncapType(IntEnum):
    """Tunnel encapsulation (``enum l2tp_encap_type``)."""

    UDP = 0
    IP = 1


class DigestType(IntEnum):
    """Message Digest AVP digest types (RFC 3931 §5.4.1)."""

    HMAC_MD5 = 0
    HMAC_SHA1 = 1


class ProxyAuthenType(IntEnum):
    RESERVED = 0
    TEXTUAL = 1
    CHAP = 2
    PAP = 3
    NONE = 4
    MSCHAPV1 = 5
    EAP = 7


# Framing / bearer capability bits.
FRAMING_SYNC = 0x1
FRAMING_ASYNC = 0x2
BEARER_DIGITAL = 0x1
BEARER_ANALOG = 0x2

# Circuit Status bits (RFC 3931 §5.4.5, RFC 5641).
CIRCUIT_ACTIVE = 0x0001
CIRCUIT_NEW = 0x0002
