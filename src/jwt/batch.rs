//! [`decode_many`]: [`decode`](super::decode) for many tokens at once, with the ed25519
//! signatures checked in batches ([`super::batch_equation`]: `ed25519_dalek::verify_batch`'s
//! check, with the terms of equal issuer keys added before the multiplication).
//!
//! It exists for a replica's sync, which re-verifies every account JWT the primary holds
//! (~100,000): single verification was ~4 s of CPU there, the largest part of a sync. A batch
//! shares one multi-scalar multiplication among its signatures and costs about half as much per
//! signature. Parsing, key decoding and the per-thread key cache are `decode`'s own, so only the
//! cryptographic check differs, and the doc of [`decode_many`] says exactly how.

use super::{parse, with_issuer_key, Jwt, JwtError, Parsed};
use ed25519_dalek::{Signature, VerifyingKey};

/// Signatures per batch check. (Measured with ed25519-dalek's `verify_batch`; the grouped check
/// that replaced it made `jwt/decode_many_1000` 27–34 µs a token instead of 40–42, A/B in one
/// session, and was not re-tuned for size.) On the AMD EPYC this was first measured on, groups of
/// 32 to 256 all cost 19–21 µs a token; on the Xeon of the million-account work
/// (`jwt/verify_batch_1024_in_*` in `benches/main.rs`) groups of 256 cost 23% less than groups
/// of 64 (29 vs 37 µs a signature, busy machine; 1,024: 27 µs), as the multi-scalar
/// multiplication switches to Pippenger's method above ~190 points. A group that fails is
/// re-checked one token at a time, so one bad token costs its whole group (~256 single checks,
/// ~10–20 ms); the primary verified every token of a feed already, so that is rare.
const GROUP: usize = 256;

/// Decodes and verifies many tokens, checking their signatures in batches; one result per
/// token, in input order.
///
/// Why: a replica re-verifies every token it syncs from its primary, ~100,000 account JWTs, and
/// single ed25519 verification was the bulk of that CPU. `verify_batch` over groups of 64 costs
/// about half as much per signature.
///
/// Takes anything whose items are `AsRef<str>`: `&[&str]`, `&[String]`, `Vec<String>`, ….
///
/// Each result is what [`decode`](super::decode) gives for that token, with the one exception
/// described below: the same claims, or the same [`JwtError`] with the same message. Tokens
/// that fail before the signature check (malformed, unsupported algorithm, an issuer that is
/// not a valid nkey, a signature that is not 64 bytes) get that error and never enter a batch.
/// When a group's batch check fails, each of its tokens is verified singly to find the bad
/// ones, so a bad token costs its group about three times the batch price; a sync of tokens the
/// primary already verified has none.
///
/// # How batch verification differs from single verification
///
/// The batch check ([`super::batch_equation`], which decides exactly as ed25519-dalek 2.2's
/// `verify_batch` does) tests one random linear combination of the group's
/// verification equations, `∑ zᵢ·(sᵢ·B − Rᵢ − kᵢ·Aᵢ) = 0`, with 128-bit coefficients `zᵢ`
/// derived by hashing the whole group, over the *decompressed* `R`s, and without multiplying by
/// the cofactor 8 (cofactorless, like single verification). Single verification instead
/// recomputes `R` and compares its canonical encoding byte for byte. (See the "Batch
/// verification" section of ed25519-dalek's README.) Hence:
///
/// - Every signature that passes single verification passes the batch: a token that `decode`
///   accepts, `decode_many` accepts.
/// - A token that single verification rejects passes a batch only if its equation is off by a
///   point of small order, or its `R` is a non-canonical encoding of the right point; an error
///   of prime order survives the random combination with probability about 2⁻¹²⁸. Making such a
///   signature takes the issuer's private key (`s` must be computed from `H(R‖A‖M)` for the
///   doctored `R`), or an issuer key that itself has a small-order component, which no key
///   derived from an nkey seed has: either way, only the holder of the issuer's private key,
///   on purpose. Even then the token passes only when its group's hash draws a coefficient that
///   cancels the small-order part (1 in 2, 4 or 8 per try, so the holder can grind for it), and
///   its verdict can depend on which tokens share its group.
/// - Weak (small-order) issuer keys have no private key, so with them anyone could do the
///   above: their tokens are never batched, they are verified singly.
///
/// So a token from anyone without an issuer's private key gets exactly `decode`'s verdict. The
/// holder of one can craft a token that `decode_many` accepts and `decode` (and nats-server)
/// refuses; it gives them no power to sign anything they could not sign validly anyway.
pub fn decode_many<S: AsRef<str>>(tokens: &[S]) -> Vec<Result<Jwt, JwtError>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut group = Group::default();
    for token in tokens {
        let result = group.add(out.len(), token.as_ref());
        out.push(result);
        if group.parsed.len() == GROUP {
            group.check(&mut out);
        }
    }
    group.check(&mut out);
    out
}

/// Tokens waiting for one batch check, as the parallel slices it takes. Reused from
/// group to group to keep the allocations.
#[derive(Default)]
struct Group<'a> {
    /// Each token's index in the output.
    slots: Vec<usize>,
    parsed: Vec<Parsed<'a>>,
    messages: Vec<&'a [u8]>,
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
}

impl<'a> Group<'a> {
    /// Does everything `decode` does before the signature check, in the same order and with
    /// the same errors: parse, the issuer key (from the same per-thread cache), the signature's
    /// length. Returns the final result of a token that fails there or whose issuer key is weak
    /// (verified singly, see [`decode_many`]); otherwise queues the token for output slot
    /// `slot` and returns the rejection that stands until [`Group::check`] replaces it, so a
    /// token is never accepted without a check.
    fn add(&mut self, slot: usize, token: &'a str) -> Result<Jwt, JwtError> {
        let parsed = parse(token)?;
        let key = with_issuer_key(&parsed.claims.iss, |key| *key)?;
        let sig = parsed.signature().ok_or_else(|| parsed.bad_signature())?;
        if key.weak {
            parsed.verify_with(&key.key)?;
            return Ok(parsed.into_jwt());
        }
        let pending = Err(parsed.bad_signature());
        self.slots.push(slot);
        self.messages.push(parsed.signed());
        self.parsed.push(parsed);
        self.signatures.push(sig);
        self.keys.push(key.key);
        pending
    }

    /// Verifies the group, writes each token's result into its slot of `out`, and empties it.
    fn check(&mut self, out: &mut [Result<Jwt, JwtError>]) {
        let all_valid = match self.parsed.len() {
            0 => return,
            // A batch of one saves nothing over a single check and would only bring in the
            // batch equation's laxity (see `decode_many`).
            1 => false,
            _ => super::batch_equation::verify_batch(&self.messages, &self.signatures, &self.keys),
        };
        for ((slot, parsed), key) in self
            .slots
            .drain(..)
            .zip(self.parsed.drain(..))
            .zip(&self.keys)
        {
            out[slot] = if all_valid {
                Ok(parsed.into_jwt())
            } else {
                parsed.verify_with(key).map(|()| parsed.into_jwt())
            };
        }
        self.messages.clear();
        self.signatures.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, ALG_V1};
    use super::*;
    use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
    use nkeys::KeyPair;
    use serde_json::{json, Value};

    /// A v2 token with `iss` set to `iss` but signed by `signer` (`encode::sign` always makes
    /// the signer the issuer).
    fn sign_as(mut claims: Value, iss: &str, signer: &KeyPair) -> String {
        claims["iss"] = json!(iss);
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).expect("json"));
        let input = format!("{header}.{payload}");
        let sig = signer.sign(input.as_bytes()).expect("seed");
        format!("{input}.{}", BASE64URL_NOPAD.encode(&sig))
    }

    /// A v1 token (top-level `type`, signature over the payload segment alone), which
    /// `encode.rs` does not make. With `v2_input` it signs `header.payload` instead, which a
    /// v1 token must not verify with.
    fn sign_v1(signer: &KeyPair, sub: &str, name: &str, v2_input: bool) -> String {
        let claims = json!({ "jti": format!("v1-{name}"), "iat": 1, "iss": signer.public_key(),
                             "sub": sub, "name": name, "type": "account" });
        let header =
            BASE64URL_NOPAD.encode(format!(r#"{{"typ":"JWT","alg":"{ALG_V1}"}}"#).as_bytes());
        let payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).expect("json"));
        let input = if v2_input {
            format!("{header}.{payload}")
        } else {
            payload.clone()
        };
        let sig = signer.sign(input.as_bytes()).expect("seed");
        format!("{header}.{payload}.{}", BASE64URL_NOPAD.encode(&sig))
    }

    /// An operator nkey for raw public key bytes, which need not be a usable key: prefix byte,
    /// key, CRC-16/XMODEM little-endian, base32 without padding.
    fn operator_nkey(key: [u8; 32]) -> String {
        let mut raw = vec![14 << 3];
        raw.extend_from_slice(&key);
        let mut crc = 0u16;
        for &b in &raw {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        raw.extend_from_slice(&crc.to_le_bytes());
        BASE32_NOPAD.encode(&raw)
    }

    fn hex32(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        v.try_into().expect("32 bytes")
    }

    /// Flips one bit of the signature's byte `i` (of 64), keeping the segment canonical base64.
    fn flip_sig_byte(token: &str, i: usize) -> String {
        let (input, s64) = token.rsplit_once('.').expect("three segments");
        let mut sig = BASE64URL_NOPAD.decode(s64.as_bytes()).expect("b64");
        sig[i] ^= 0x01;
        format!("{input}.{}", BASE64URL_NOPAD.encode(&sig))
    }

    /// Asserts `decode_many(tokens)` agrees with `decode` token by token; returns how many
    /// were accepted.
    fn assert_same(tokens: &[String]) -> usize {
        let many = decode_many(tokens);
        assert_eq!(many.len(), tokens.len());
        let mut accepted = 0;
        for (i, (token, got)) in tokens.iter().zip(&many).enumerate() {
            match (decode(token), got) {
                (Ok(want), Ok(got)) => {
                    assert_eq!(want.claims.jti, got.claims.jti, "token {i}");
                    assert_eq!(want.claims.sub, got.claims.sub, "token {i}");
                    assert_eq!(want.raw, got.raw, "token {i}");
                    assert_eq!(want.alg, got.alg, "token {i}");
                    accepted += 1;
                }
                (Err(want), Err(got)) => {
                    assert_eq!(want, *got, "token {i}");
                    assert_eq!(want.to_string(), got.to_string(), "token {i}");
                }
                (want, got) => panic!("token {i} {token:?}: decode {want:?}, decode_many {got:?}"),
            }
        }
        accepted
    }

    fn accounts(signer: &KeyPair, n: usize, tag: &str) -> Vec<String> {
        (0..n)
            .map(|i| {
                let key = KeyPair::new_account().public_key();
                encode::account(signer, &key, &format!("{tag}-{i}"), json!({}))
            })
            .collect()
    }

    #[test]
    fn empty() {
        assert!(decode_many::<&str>(&[]).is_empty());
        assert!(decode_many(&Vec::<String>::new()).is_empty());
    }

    #[test]
    fn takes_str_slices_and_trims_like_decode() {
        let op = KeyPair::new_operator();
        let token = accounts(&op, 1, "a").remove(0);
        let padded = format!("  {token}\n");
        let got = decode_many(&[token.as_str(), padded.as_str()]);
        assert_eq!(got[0].as_ref().expect("valid").raw, token);
        assert_eq!(got[1].as_ref().expect("valid").raw, token);
    }

    #[test]
    fn matches_decode_on_a_mix() {
        let ops = [
            KeyPair::new_operator(),
            KeyPair::new_operator(),
            KeyPair::new_operator(),
        ];
        let mut tokens: Vec<String> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            tokens.extend(accounts(op, 67, &format!("op{i}")));
        }
        let valid = tokens.len();
        // Interleave the issuers so every group mixes keys.
        tokens.sort();

        let good = tokens[0].clone();
        // Every byte of R and s in turn, so some groups have several bad tokens.
        for i in (0..64).step_by(7) {
            tokens.push(flip_sig_byte(&tokens[i * 3], i));
        }
        // s ≥ ℓ: the top byte of s set, which both verifiers refuse before any curve arithmetic.
        {
            let (input, s64) = good.rsplit_once('.').expect("three segments");
            let mut sig = BASE64URL_NOPAD.decode(s64.as_bytes()).expect("b64");
            sig[63] |= 0xf0;
            tokens.push(format!("{input}.{}", BASE64URL_NOPAD.encode(&sig)));
        }
        // Signed by another key than its `iss`.
        let claims = json!({ "jti": "wrong-key", "sub": KeyPair::new_account().public_key(),
                             "nats": { "type": "account", "version": 2 } });
        tokens.push(sign_as(claims, &ops[0].public_key(), &ops[1]));
        // v1 tokens: valid, and signed over the v2 input.
        let acct = KeyPair::new_account().public_key();
        tokens.push(sign_v1(&ops[2], &acct, "good", false));
        tokens.push(sign_v1(&ops[2], &acct, "bad", true));
        // Malformed and otherwise refused before the signature check.
        let (input, s64) = good.rsplit_once('.').expect("three segments");
        let (h64, p64) = input.split_once('.').expect("two segments");
        for bad in [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{input}.{s64}="),
            format!("{input}.{}", &s64[..s64.len() - 2]),
            format!("{input}."),
            format!("{p64}.{p64}.{s64}"),
            format!(
                "{}.{p64}.{s64}",
                BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#)
            ),
            format!("{h64}.{}.{s64}", BASE64URL_NOPAD.encode(b"[1]")),
            format!("{h64}.{}.{s64}", BASE64URL_NOPAD.encode(br#"{"sub":"x"}"#)),
        ] {
            tokens.push(bad);
        }
        // Issuers that are not valid nkeys: a user-sized garbage string, and a well-formed nkey
        // whose bytes are not a curve point.
        let claims = json!({ "sub": "x", "nats": { "type": "account", "version": 2 } });
        tokens.push(sign_as(claims.clone(), "OBADKEY", &ops[0]));
        let not_a_point = (2u8..)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("some y is not on the curve");
        tokens.push(sign_as(claims, &operator_nkey(not_a_point), &ops[0]));
        // And the valid ones again after the bad ones, so bad tokens share groups with good.
        tokens.extend_from_within(..valid);

        let accepted = assert_same(&tokens);
        assert_eq!(
            accepted,
            2 * valid + 1,
            "the valid tokens, twice, and the good v1 token"
        );
    }

    #[test]
    fn one_bad_token_in_a_full_group() {
        let op = KeyPair::new_operator();
        let mut tokens = accounts(&op, GROUP * 2, "g");
        tokens[GROUP + 17] = flip_sig_byte(&tokens[GROUP + 17], 40);
        let many = decode_many(&tokens);
        for (i, r) in many.iter().enumerate() {
            assert_eq!(r.is_ok(), i != GROUP + 17, "token {i}");
        }
        assert_eq!(
            many[GROUP + 17].as_ref().expect_err("bad").to_string(),
            decode(&tokens[GROUP + 17]).expect_err("bad").to_string()
        );
        assert_same(&tokens);
    }

    /// The official vectors, made by the Go library (including a real v1 token and a bad
    /// signature), each several times so that they fill batches.
    #[test]
    fn matches_decode_on_the_official_vectors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors");
        assert!(dir.is_dir(), "vectors not found at {}", dir.display());
        let mut tokens = Vec::new();
        for sub in [".", "accounts", "activations", "post"] {
            for entry in std::fs::read_dir(dir.join(sub)).expect("vector dir") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "jwt") {
                    tokens.push(std::fs::read_to_string(&path).expect("vector"));
                }
            }
        }
        assert!(tokens.len() >= 15, "{} vectors", tokens.len());
        let v1 = std::fs::read_to_string(dir.join("post/ok_v1_format.jwt")).expect("v1 vector");
        assert!(decode(&v1).is_ok());
        let all: Vec<String> = (0..8).flat_map(|_| tokens.iter().cloned()).collect();
        let accepted = assert_same(&all);
        assert!(
            accepted > 0 && accepted < all.len(),
            "{accepted} of {}",
            all.len()
        );
    }

    /// Weak issuer keys have no secret: anyone can make signatures that single verification
    /// accepts for some messages, and the batch equation would accept more. Their tokens must
    /// get single verification's verdict, each in a group of valid tokens.
    #[test]
    fn weak_issuer_keys_get_single_verdicts() {
        let op = KeyPair::new_operator();
        // The identity, and points of order 2, 4 and 8.
        let weak = [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        ];
        // R = the identity, s = 0: the equation reduces to k·A = 0, true for the identity key
        // and for about 1 in ord(A) messages otherwise.
        let mut forged_sig = [0u8; 64];
        forged_sig[0] = 1;
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let mut tokens = Vec::new();
        let mut n = 0;
        for hex in weak {
            let key = hex32(hex);
            assert!(VerifyingKey::from_bytes(&key).expect("a point").is_weak());
            let iss = operator_nkey(key);
            for _ in 0..16 {
                n += 1;
                let claims = json!({ "jti": format!("forged-{n}"), "iss": iss,
                    "sub": KeyPair::new_account().public_key(),
                    "nats": { "type": "account", "version": 2 } });
                let payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).expect("json"));
                tokens.extend(accounts(&op, 7, "pad"));
                tokens.push(format!(
                    "{header}.{payload}.{}",
                    BASE64URL_NOPAD.encode(&forged_sig)
                ));
            }
        }
        let accepted = assert_same(&tokens);
        // Sanity: the forgery works under the identity key, so this tested real acceptances.
        assert!(accepted > 7 * 16 * weak.len() + 16, "{accepted}");
    }
}
