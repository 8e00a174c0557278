//! ed25519 batch verification with one term per distinct public key: the check
//! `ed25519_dalek::verify_batch` makes, computed with fewer curve points.
//!
//! Why: a replica's sync verifies every token its primary holds (a million at the largest
//! size), and nearly all of them are signed by one key (the operator or one of its signing
//! keys). `verify_batch` checks `∑ zᵢ·(sᵢ·B − Rᵢ − kᵢ·Aᵢ) = 0` with one multi-scalar
//! multiplication over `2n + 1` points: every `Rᵢ` with a 128-bit coefficient `zᵢ`, and every
//! `Aᵢ` with a full-width one, `zᵢ·kᵢ`. When the `Aᵢ` are one point `A`, the sum of its terms
//! is `(∑ zᵢ·kᵢ)·A`: one point instead of `n`, and those were the most expensive half of the
//! work (the 253-bit coefficients). This module adds the coefficients of equal keys before
//! multiplying; nothing else differs.
//!
//! Same decision as ed25519-dalek 2.2's `verify_batch`, not merely a similar one: the same
//! transcript derives the same `zᵢ` from the same inputs (`H(R‖A‖M)` of each signature, then
//! each `s`, through `merlin`, with no extra randomness), the same checks refuse the same inputs
//! (`s` not canonical, `R` not a point), and the sum it tests is equal term by term after
//! grouping (addition of points is associative and commutative). The test below compares both
//! on valid and doctored batches. [`super::batch`]'s documentation says how a batch differs
//! from single verification; that reasoning carries over unchanged.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use merlin::Transcript;
use sha2::{Digest, Sha512};

/// Whether every signature of the batch verifies: `signatures[i]` of `messages[i]` under
/// `keys[i]`. `false` also for slices of different lengths.
pub fn verify_batch(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return false;
    }
    // kᵢ = H(Rᵢ ‖ Aᵢ ‖ Mᵢ), as 64 bytes first: the transcript takes them in that form.
    let hrams: Vec<[u8; 64]> = signatures
        .iter()
        .zip(keys)
        .zip(messages)
        .map(|((sig, key), msg)| {
            let mut h = Sha512::new();
            h.update(sig.r_bytes());
            h.update(key.as_bytes());
            h.update(msg);
            h.finalize().into()
        })
        .collect();

    // The coefficients zᵢ, exactly as ed25519-dalek derives them (see the module doc).
    let mut transcript = Transcript::new(b"ed25519 batch verification");
    for hram in &hrams {
        transcript.append_message(b"hram", hram);
    }
    for sig in signatures {
        transcript.append_message(b"sig.s", sig.s_bytes());
    }
    let mut rng = transcript.build_rng().finalize(&mut ZeroRng);
    let mut z_bytes = [0u8; 16];

    let mut b_coefficient = Scalar::ZERO;
    let mut zs = Vec::with_capacity(signatures.len());
    let mut rs = Vec::with_capacity(signatures.len());
    // (key, ∑ zᵢ·kᵢ over its signatures): a batch has a handful of distinct keys at most.
    let mut by_key: Vec<(&VerifyingKey, Scalar)> = Vec::new();
    for ((sig, key), hram) in signatures.iter().zip(keys).zip(&hrams) {
        // ed25519-dalek parses every signature (refusing a non-canonical s) before drawing
        // the first z; parsing does not touch the RNG, so interleaving them draws the same zs.
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())) else {
            return false;
        };
        rand::RngCore::fill_bytes(&mut rng, &mut z_bytes);
        let z = Scalar::from(u128::from_le_bytes(z_bytes));
        b_coefficient += z * s;
        let zk = z * Scalar::from_bytes_mod_order_wide(hram);
        match by_key
            .iter_mut()
            .find(|(k, _)| k.as_bytes() == key.as_bytes())
        {
            Some((_, sum)) => *sum += zk,
            None => by_key.push((key, zk)),
        }
        zs.push(z);
        rs.push(CompressedEdwardsY(*sig.r_bytes()).decompress());
    }

    let scalars = std::iter::once(-b_coefficient)
        .chain(zs)
        .chain(by_key.iter().map(|(_, sum)| *sum));
    let points = std::iter::once(Some(ED25519_BASEPOINT_POINT))
        .chain(rs)
        .chain(by_key.iter().map(|(key, _)| Some(key.to_edwards())));
    EdwardsPoint::optional_multiscalar_mul(scalars, points).is_some_and(|p| p.is_identity())
}

/// The RNG `merlin` mixes into the transcript's: none (every byte zero), so the coefficients
/// depend on the batch alone, as in ed25519-dalek. They are unpredictable to whoever made the
/// signatures because they hash all of them.
struct ZeroRng;

impl rand::RngCore for ZeroRng {
    fn next_u32(&mut self) -> u32 {
        0
    }

    fn next_u64(&mut self) -> u64 {
        0
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for ZeroRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use rand::{Rng, SeedableRng};

    /// A batch of `n` signatures of ~800-byte messages by `signers` keys (round robin).
    fn batch(
        rng: &mut rand::rngs::StdRng,
        n: usize,
        signers: usize,
    ) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let sks: Vec<SigningKey> = (0..signers)
            .map(|_| SigningKey::from_bytes(&rng.gen()))
            .collect();
        let mut msgs = Vec::new();
        let mut sigs = Vec::new();
        let mut keys = Vec::new();
        for i in 0..n {
            let sk = &sks[i % signers];
            let msg: Vec<u8> = (0..rng.gen_range(1..900)).map(|_| rng.gen()).collect();
            sigs.push(sk.sign(&msg));
            keys.push(sk.verifying_key());
            msgs.push(msg);
        }
        (msgs, sigs, keys)
    }

    fn both(msgs: &[Vec<u8>], sigs: &[Signature], keys: &[VerifyingKey]) -> (bool, bool) {
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        (
            verify_batch(&refs, sigs, keys),
            ed25519_dalek::verify_batch(&refs, sigs, keys).is_ok(),
        )
    }

    #[test]
    fn same_verdict_as_ed25519_dalek_on_valid_and_doctored_batches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut rejected = 0;
        for round in 0..300 {
            let n = rng.gen_range(1..40);
            let signers = rng.gen_range(1..4);
            let (mut msgs, mut sigs, mut keys) = batch(&mut rng, n, signers);
            let i = rng.gen_range(0..n);
            match round % 7 {
                0 => {}
                // Another message.
                1 => msgs[i].push(b'x'),
                // A flipped bit of R or of s.
                2 | 3 => {
                    let mut b = sigs[i].to_bytes();
                    let bit = if round % 7 == 2 {
                        rng.gen_range(0..255)
                    } else {
                        rng.gen_range(256..509)
                    };
                    b[bit / 8] ^= 1 << (bit % 8);
                    sigs[i] = Signature::from_bytes(&b);
                }
                // s not canonical: s + ℓ (the group order) still fits 256 bits for most s.
                4 => {
                    let mut b = sigs[i].to_bytes();
                    b[63] |= 0xf0;
                    sigs[i] = Signature::from_bytes(&b);
                }
                // Another signer's key.
                5 => keys[i] = SigningKey::from_bytes(&rng.gen()).verifying_key(),
                // Two signatures swapped between messages.
                _ if n > 1 => {
                    let j = (i + 1) % n;
                    sigs.swap(i, j);
                }
                _ => {}
            }
            let (ours, theirs) = both(&msgs, &sigs, &keys);
            assert_eq!(ours, theirs, "round {round}: n={n} signers={signers}");
            if !ours {
                rejected += 1;
            }
        }
        // The doctored rounds really were refused (not a vacuous comparison).
        assert!(rejected > 150, "{rejected}");
    }

    #[test]
    fn accepts_a_large_batch_of_one_key_and_refuses_one_bad_signature_in_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (msgs, mut sigs, keys) = batch(&mut rng, 256, 1);
        assert_eq!(both(&msgs, &sigs, &keys), (true, true));
        sigs.swap(3, 200);
        assert_eq!(both(&msgs, &sigs, &keys), (false, false));
    }

    /// A signature by the secret scalar `a` whose `R` carries the small-order point `t`: its
    /// equation is off by exactly `−t`, so a batch accepts it only when its coefficient `z`
    /// kills `t` (1 in 8 for a point of order 8). Which batches do depends on the `z`s alone:
    /// the two implementations agree on every such batch only if they draw the same ones.
    fn torsioned(
        a: &Scalar,
        r: &Scalar,
        t: &EdwardsPoint,
        msg: &[u8],
    ) -> (Signature, VerifyingKey) {
        let big_a = ED25519_BASEPOINT_POINT * a;
        let key = VerifyingKey::from_bytes(&big_a.compress().to_bytes()).expect("a point");
        let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(big_a.compress().as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        (Signature::from_bytes(&bytes), key)
    }

    #[test]
    fn draws_the_same_coefficients_as_ed25519_dalek() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t = curve25519_dalek::constants::EIGHT_TORSION[1];
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..96 {
            let (mut msgs, mut sigs, mut keys) = batch(&mut rng, 6, 1);
            let a = Scalar::from_bytes_mod_order(rng.gen());
            let r = Scalar::from_bytes_mod_order(rng.gen());
            let msg: Vec<u8> = (0..200).map(|_| rng.gen()).collect();
            let (sig, key) = torsioned(&a, &r, &t, &msg);
            msgs.push(msg);
            sigs.push(sig);
            keys.push(key);
            let (ours, theirs) = both(&msgs, &sigs, &keys);
            assert_eq!(ours, theirs, "round {round}");
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both outcomes happen, so agreement on all of them says the coefficients are equal.
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn refuses_mismatched_lengths() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (msgs, sigs, keys) = batch(&mut rng, 4, 1);
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(!verify_batch(&refs[..3], &sigs, &keys));
    }
}
