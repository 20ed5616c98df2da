//! How long the names clients and back ends choose may be (SPEC §12).
//!
//! Event names and userIds are stored in the binder and repeated in logs,
//! envelopes and cluster records; tokens are handed to auth (a JWT is
//! hashed). Without a cap, one register or push could make each of those
//! as big as a whole message. Every way in — WebSocket commands, push
//! bodies, the library's `Handle`, records from other nodes — checks here,
//! so the limits and their wording exist once.

/// Most bytes in an event name or a userId.
pub const MAX_NAME_BYTES: usize = 256;

/// Most bytes in a register token; longer ones are rejected unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// An event name: `Err` holds the reason (`event too long`).
pub fn check_event(event: &str) -> Result<(), &'static str> {
    if event.len() > MAX_NAME_BYTES {
        return Err("event too long");
    }
    Ok(())
}

/// A userId, whether pushed to or returned by auth (`userId too long`).
pub fn check_user(user: &str) -> Result<(), &'static str> {
    if user.len() > MAX_NAME_BYTES {
        return Err("userId too long");
    }
    Ok(())
}

/// A register token, before auth sees it (`token too long`).
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("token too long");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive() {
        let at = "e".repeat(MAX_NAME_BYTES);
        let over = "e".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(check_event(&at), Ok(()));
        assert_eq!(check_event(&over), Err("event too long"));
        assert_eq!(check_user(&at), Ok(()));
        assert_eq!(check_user(&over), Err("userId too long"));
        assert_eq!(check_token(&"t".repeat(MAX_TOKEN_BYTES)), Ok(()));
        assert_eq!(
            check_token(&"t".repeat(MAX_TOKEN_BYTES + 1)),
            Err("token too long")
        );
        // Bytes, not characters: 86 three-byte characters are 258 bytes.
        assert_eq!(check_event(&"€".repeat(86)), Err("event too long"));
    }
}
