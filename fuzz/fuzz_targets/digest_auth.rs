//! Digest authentication input from the network: the Authorization header of a REGISTER that the
//! registrar verifies, and the WWW-Authenticate/Proxy-Authenticate challenge of a carrier that a
//! trunk answers. Neither panics; a challenge that parses can be answered, and an Authorization
//! built from made-up credentials never verifies against a different password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::auth::{authorize, authorize_response, Credential, DigestChallenger};
use sip::{Method, Request, Response};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    // As the registrar sees it: any header value in Authorization.
    let challenger = DigestChallenger::new("dialtone", [7; 32]);
    let mut register = Request::new(Method::Register, "sip:127.0.0.1");
    register.headers.push("Authorization", text);
    let _ = challenger.verify(1_000, &register, |user, realm| {
        Some(Credential::precomputed(user, realm, "correct horse battery"))
    });

    // As a trunk sees it: any challenge from the carrier.
    let _ = authorize(text, &Method::Invite, "sip:+15550001111@127.0.0.1", "user", "secret", "c0ffee", 1);
    let mut challenge = Response::from_request(&register, 401, "Unauthorized");
    challenge.headers.push("WWW-Authenticate", text);
    let _ = authorize_response(&challenge, &Method::Register, "sip:127.0.0.1", "user", "secret", "c0ffee", 1);

    // A well-formed answer to our own challenge verifies only with the right password.
    for header in challenger.challenges(1_000, false) {
        let Ok(value) = authorize(&header, &Method::Register, "sip:127.0.0.1", text, "right", "c0ffee", 1) else { continue };
        let mut answered = Request::new(Method::Register, "sip:127.0.0.1");
        answered.headers.push("Authorization", &value);
        let wrong = challenger.verify(1_000, &answered, |user, realm| Some(Credential::precomputed(user, realm, "wrong")));
        assert!(wrong.is_err(), "a digest for another password verified");
    }
});
