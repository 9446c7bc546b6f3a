//! Casdoor password hash strings in all eight schemes (`passwords::schemes`): the scheme names, the cost
//! of a stored value (`work`, which the admin API and imports check), and the check itself (`verify`,
//! `usable`, `check` with an organization's salt and master password).
//!
//! A stored value within the product's cost cap may still cost seconds (bcrypt cost 16, 10 M PBKDF2
//! iterations, 256 MiB of argon2): this target runs a check only when it is cheap ([`affordable`]), so no
//! input can make it slow. Values over the cap are refused without running, and are always checked.
//!
//! Input: a selector byte (scheme; bit 7: run the fixed-cost PBKDF2-salt check), then
//! `password 0xFF stored 0xFF salt 0xFF organization scheme 0xFF organization salt 0xFF master password`.
#![no_main]

use jeton_edge::password::{self as schemes, OrgPolicy, Scheme, StoredPassword, MAX_ARGON2_COST};
use libfuzzer_sys::fuzz_target;

/// Whether checking `stored` is cheap enough to run on every input (the fuzzer's bound, far below the
/// product's cap). Errs on the side of not running.
fn affordable(scheme: Scheme, stored: &str, pbkdf2: bool) -> bool {
    let number = |s: &str| s.parse::<u64>().ok();
    match scheme {
        Scheme::Bcrypt => {
            // The product reads the cost from the two characters after `$2x$`; the bcrypt crate from the
            // field. Both must be small.
            let fields: Vec<&str> = stored.split('$').filter(|f| !f.is_empty()).collect();
            let field = fields.get(1).copied().unwrap_or("");
            let two: String = stored.trim_start_matches(['$', '2', 'a', 'b', 'y']).chars().take(2).collect();
            [field, two.as_str()].iter().all(|c| number(c.trim_start_matches('+')).is_none_or(|c| c <= 6))
        }
        Scheme::Argon2id => {
            let params = stored.split('$').nth(3).unwrap_or("");
            let mut cost = 1u64;
            for kv in params.split(',') {
                if let Some(v) = kv.split_once('=').and_then(|(_, v)| number(v.trim_start_matches('+'))) {
                    cost = cost.saturating_mul(v.max(1));
                }
            }
            cost <= 4096
        }
        Scheme::Pbkdf2Django => {
            stored.split('$').nth(1).and_then(|i| number(i.trim_start_matches('+'))).is_none_or(|i| i <= 5_000)
        }
        Scheme::Pbkdf2Salt => pbkdf2,
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let scheme = Scheme::ALL[selector as usize % Scheme::ALL.len()];
    // PBKDF2-salt always runs 27,500 iterations (~0.1 s here under ASan, up to three times in `check`): with
    // bit 7, and then only on one input in eight, so inputs that reach it keep the target fast.
    let pbkdf2 = selector & 0x80 != 0 && data.iter().map(|b| *b as u32).sum::<u32>() % 8 == 0;
    let f = jeton_fuzz::fields(rest);
    let [password, stored, salt, org_type, org_salt, master] = std::array::from_fn(|i| jeton_fuzz::text(&f, i));
    let _ = Scheme::parse(&org_type);
    match schemes::work(scheme, &stored) {
        Err(_) => {
            // Over the cap: refused without running.
            assert!(!schemes::verify(scheme, &password, &stored, &salt), "an over-cap hash verified");
        }
        Ok(memory) => {
            assert!(memory as u64 <= MAX_ARGON2_COST, "one check reserves {memory} KiB");
            if affordable(scheme, &stored, pbkdf2) {
                let _ = schemes::verify(scheme, &password, &stored, &salt);
            }
        }
    }
    // The whole check, with the organization's scheme and master password.
    let org = OrgPolicy { password_type: &org_type, password_salt: &org_salt, master_password: &master };
    let user = StoredPassword { password: &stored, password_type: scheme.as_str(), password_salt: &salt };
    let master_scheme = Scheme::parse(&org_type);
    let usable = schemes::usable(&org, &user);
    if let Ok(memory) = &usable {
        assert!(*memory as u64 <= MAX_ARGON2_COST, "one check reserves {memory} KiB");
    }
    let cheap = affordable(scheme, &stored, pbkdf2) && master_scheme.is_none_or(|s| affordable(s, &master, pbkdf2));
    if cheap {
        let checked = schemes::check(&org, &user, &password);
        if let Err(refused) = &usable {
            if !password.is_empty() {
                assert_eq!(checked.as_ref().err(), Some(refused), "check and usable disagree");
            }
        }
    }
});
