//! Coupon codes (SPEC §7.4, §7.7), the pure part: the canonical form codes are matched in, the shape
//! of a shared code, and generated personal codes (Crockford base32, shown as `XXXX-XXXX-XXXX`).
//!
//! Codes are matched without regard to case or dashes: `vip-week`, `VIPWEEK` and `Vip-Week` are one
//! code. Generated codes use Crockford's alphabet (no I, L, O or U), so they survive being read aloud
//! or retyped; 12 characters carry 60 random bits.

use crate::error::ValidationError;

/// Crockford's base32 alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The form codes are stored and matched in: upper case, dashes removed.
pub fn canonical(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Checks a shared code as a client creates it: 4–32 of `[A-Za-z0-9-]`, with at least four characters
/// left once dashes are removed (a code of dashes only matches nothing).
pub fn check_shared_code(code: &str) -> Result<(), ValidationError> {
    let shaped = (4..=32).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !shaped {
        return Err(ValidationError::field(
            "code",
            "expected 4 to 32 characters of A-Z, a-z, 0-9 and -",
        ));
    }
    if canonical(code).len() < 4 {
        return Err(ValidationError::field(
            "code",
            "needs at least 4 letters or digits besides dashes",
        ));
    }
    Ok(())
}

/// A personal code from 60 random bits (the low 60 of `random`): 12 Crockford characters, shown in
/// groups of four (`7K3Q-9XWD-M2PA`). Its canonical form is the same without dashes.
pub fn generated_code(random: u64) -> String {
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 55 - 5 * i;
        out.push(CROCKFORD[((random >> shift) & 31) as usize] as char);
    }
    out
}

/// The display form of a generated code from its canonical form (`7K3Q9XWDM2PA` → `7K3Q-9XWD-M2PA`).
pub fn display_generated(canonical: &str) -> String {
    let mut out = String::with_capacity(canonical.len() + canonical.len() / 4);
    for (i, c) in canonical.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_without_regard_to_case_or_dashes() {
        assert_eq!(canonical("vip-week"), "VIPWEEK");
        assert_eq!(canonical("Vip-Week"), canonical("VIPWEEK"));
        assert_eq!(canonical("7k3q-9xwd-m2pa"), "7K3Q9XWDM2PA");
    }

    #[test]
    fn shared_codes_have_their_shape() {
        assert!(check_shared_code("VIP-WEEK-2026").is_ok());
        assert!(check_shared_code("abcd").is_ok());
        for bad in [
            "abc",
            "a-b-c",
            "----",
            "vip week",
            "vip_week",
            &"A".repeat(33),
        ] {
            let e = check_shared_code(bad).unwrap_err();
            assert_eq!(e.path(), "code", "{bad}");
        }
    }

    #[test]
    fn generated_codes_are_twelve_crockford_characters_in_three_groups() {
        let code = generated_code(0x0FED_CBA9_8765_4321);
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        assert!(
            canonical(&code)
                .bytes()
                .all(|b| CROCKFORD.contains(&b) && !b"ILOU".contains(&b))
        );
        assert_eq!(display_generated(&canonical(&code)), code);
        assert_ne!(generated_code(1), generated_code(2));
        assert_eq!(generated_code(0), "0000-0000-0000");
        assert_eq!(generated_code(u64::MAX), "ZZZZ-ZZZZ-ZZZZ");
    }
}
