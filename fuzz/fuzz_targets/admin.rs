//! The admin API's JSON request bodies: `POST /api/jeton/apply` (an [`ApplyRequest`], whose items are
//! checked against a real node's state and key items imported, as a dry run: nothing is written), the
//! add/update bodies of organizations, users, applications, roles and groups and the add-cert body
//! (decoded and checked as the API does before it touches the state), and the paging parameters of the lists.
//!
//! Input: a mode byte, then the body (modes 0-6) or a query string (mode 7).
#![no_main]

use jeton_edge::fuzzing::{admin_body, admin_page, AdminBody};
use jeton_edge::import::{apply_items, Administrators, ApplyRequest};
use libfuzzer_sys::fuzz_target;

const KINDS: [AdminBody; 6] = [
    AdminBody::Organization,
    AdminBody::User,
    AdminBody::Application,
    AdminBody::Role,
    AdminBody::Group,
    AdminBody::Cert,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        0 => {
            let Ok(req) = serde_json::from_slice::<ApplyRequest>(body) else {
                return;
            };
            let f = jeton_fuzz::fixture();
            let admins = Administrators {
                org: &f.edge.config.admin_org,
                app: &f.edge.config.admin_app,
                replace_user: req.replace_admin,
                replace_app: false,
            };
            let items = req.items.len();
            let result = f
                .runtime
                .block_on(apply_items(&f.edge.node, &f.edge.kek, req.items, true, admins))
                .expect("a dry run needs nothing but the state");
            // A dry run names each item it would write once, in order.
            assert!(result.would_write.windows(2).all(|w| w[0] < w[1]), "{result:?}");
            assert!(result.would_write.iter().all(|i| *i < items));
        }
        7 => {
            if let Ok(q) = std::str::from_utf8(body) {
                if let Ok(p) = jeton_edge::http::parse_form(q) {
                    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("").to_string();
                    let _ = admin_page(&get("p"), &get("pageSize"));
                }
            }
        }
        kind => {
            let _ = admin_body(KINDS[kind as usize - 1], body);
        }
    }
});
