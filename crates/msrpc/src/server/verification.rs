//! The verification trailer ([MS-RPCE] 2.2.2.13): commands a client puts
//! after the stub data of a request so that the server can check parts of
//! the PDU the security provider may not protect. Samba's clients send
//! it on every authenticated request.

use crate::pdu::SyntaxId;
use crate::uuid::Uuid;

/// rpc_sec_verification_trailer's signature (2.2.2.13.1).
pub const SIGNATURE: [u8; 8] = [0x8a, 0xe3, 0x13, 0x71, 0x02, 0xf4, 0x36, 0x71];

const COMMAND_BITMASK_1: u16 = 0x0001;
const COMMAND_PCONTEXT: u16 = 0x0002;
const COMMAND_HEADER2: u16 = 0x0003;
const COMMAND_END: u16 = 0x4000;
const MUST_PROCESS: u16 = 0x8000;
/// Bits 0 to 13: the command type.
const COMMAND_TYPE: u16 = 0x3FFF;

/// One command of a verification trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// rpc_sec_vt_bitmask: bit 0x1, the client supports header signing.
    Bitmask(u32),
    /// rpc_sec_vt_pcontext: the presentation context of the request.
    PContext {
        interface: SyntaxId,
        transfer: SyntaxId,
    },
    /// rpc_sec_vt_header2: a copy of the request's header fields.
    Header2 {
        ptype: u8,
        drep: [u8; 4],
        call_id: u32,
        context_id: u16,
        opnum: u16,
    },
    /// A command this server does not know, that it must process: the
    /// request is refused.
    UnknownMustProcess(u16),
}

/// Finds a verification trailer at the end of `stub`: its offset and its
/// commands. The trailer starts 4-byte aligned and runs to the end; the
/// last command carries SEC_VT_COMMAND_END. Searched from the end, as the
/// stub data before it may be followed by padding (2.2.2.13).
pub fn find(stub: &[u8]) -> Option<(usize, Vec<Command>)> {
    if stub.len() < SIGNATURE.len() + 4 {
        return None;
    }
    let last = (stub.len() - SIGNATURE.len() - 4) & !3;
    (0..=last)
        .rev()
        .step_by(4)
        .filter(|&at| stub[at..at + 8] == SIGNATURE)
        .find_map(|at| parse_commands(&stub[at + 8..]).map(|c| (at, c)))
}

fn parse_commands(mut bytes: &[u8]) -> Option<Vec<Command>> {
    let mut commands = Vec::new();
    loop {
        if bytes.len() < 4 {
            return None;
        }
        let command = u16::from_le_bytes([bytes[0], bytes[1]]);
        let length = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        let body = bytes.get(4..4 + length)?;
        let parsed = match (command & COMMAND_TYPE, length) {
            (COMMAND_BITMASK_1, 4) => Some(Command::Bitmask(u32_le(body, 0))),
            (COMMAND_PCONTEXT, 40) => Some(Command::PContext {
                interface: syntax(&body[..20]),
                transfer: syntax(&body[20..]),
            }),
            (COMMAND_HEADER2, 16) => Some(Command::Header2 {
                ptype: body[0],
                drep: [body[4], body[5], body[6], body[7]],
                call_id: u32_le(body, 8),
                context_id: u16::from_le_bytes([body[12], body[13]]),
                opnum: u16::from_le_bytes([body[14], body[15]]),
            }),
            // A known command of the wrong length: not a trailer.
            (COMMAND_BITMASK_1 | COMMAND_PCONTEXT | COMMAND_HEADER2, _) => return None,
            (other, _) if command & MUST_PROCESS != 0 => Some(Command::UnknownMustProcess(other)),
            // A command it does not know and need not process is ignored.
            _ => None,
        };
        commands.extend(parsed);
        bytes = &bytes[4 + length..];
        if command & COMMAND_END != 0 {
            return bytes.is_empty().then_some(commands);
        }
    }
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn syntax(b: &[u8]) -> SyntaxId {
    SyntaxId {
        uuid: Uuid::from_le_bytes(&b[..16].try_into().unwrap_or([0; 16])),
        version: u32_le(b, 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ndr20;

    fn trailer(commands: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut t = SIGNATURE.to_vec();
        for (i, (command, body)) in commands.iter().enumerate() {
            let mut c = *command;
            if i + 1 == commands.len() {
                c |= COMMAND_END;
            }
            t.extend_from_slice(&c.to_le_bytes());
            t.extend_from_slice(&(body.len() as u16).to_le_bytes());
            t.extend_from_slice(body);
        }
        t
    }

    #[test]
    fn found_after_padded_stub_data_and_parsed() {
        let mut header2 = vec![0u8, 0, 0, 0, 0x10, 0, 0, 0];
        header2.extend_from_slice(&7u32.to_le_bytes());
        header2.extend_from_slice(&1u16.to_le_bytes());
        header2.extend_from_slice(&2u16.to_le_bytes());
        let mut pcontext = Vec::new();
        for s in [ndr20(), ndr20()] {
            pcontext.extend_from_slice(&s.uuid.to_le_bytes());
            pcontext.extend_from_slice(&s.version.to_le_bytes());
        }
        // Five bytes of stub data, three of padding, then the trailer.
        let mut stub = vec![1, 2, 3, 4, 5, 0, 0, 0];
        stub.extend(trailer(&[
            (COMMAND_BITMASK_1, 1u32.to_le_bytes().to_vec()),
            (COMMAND_PCONTEXT, pcontext),
            (COMMAND_HEADER2, header2),
        ]));
        let (at, commands) = find(&stub).unwrap();
        assert_eq!(at, 8);
        assert_eq!(
            commands,
            vec![
                Command::Bitmask(1),
                Command::PContext {
                    interface: ndr20(),
                    transfer: ndr20()
                },
                Command::Header2 {
                    ptype: 0,
                    drep: [0x10, 0, 0, 0],
                    call_id: 7,
                    context_id: 1,
                    opnum: 2
                }
            ]
        );
    }

    #[test]
    fn unknown_commands_are_skipped_unless_they_must_be_processed() {
        let stub = trailer(&[(0x0033, vec![9; 4]), (COMMAND_BITMASK_1, vec![0; 4])]);
        assert_eq!(find(&stub).unwrap().1, vec![Command::Bitmask(0)]);
        let stub = trailer(&[(0x0033 | MUST_PROCESS, vec![9; 4])]);
        assert_eq!(
            find(&stub).unwrap().1,
            vec![Command::UnknownMustProcess(0x0033)]
        );
    }

    #[test]
    fn stub_data_that_merely_holds_the_signature_is_not_a_trailer() {
        // No END flag, wrong lengths, truncated commands: all ignored.
        let mut stub = SIGNATURE.to_vec();
        stub.extend_from_slice(&COMMAND_BITMASK_1.to_le_bytes());
        stub.extend_from_slice(&4u16.to_le_bytes());
        stub.extend_from_slice(&[0; 4]);
        assert_eq!(find(&stub), None, "no END flag");
        let mut stub = SIGNATURE.to_vec();
        stub.extend_from_slice(&(COMMAND_PCONTEXT | COMMAND_END).to_le_bytes());
        stub.extend_from_slice(&8u16.to_le_bytes());
        stub.extend_from_slice(&[0; 8]);
        assert_eq!(find(&stub), None, "a pcontext of the wrong length");
        assert_eq!(find(&SIGNATURE), None);
        assert_eq!(find(&[]), None);
    }
}
