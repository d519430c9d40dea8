//! The signing and encrypting security policies of the secure conversation (Part 6 §6.7):
//! `Basic256Sha256` and `Aes128_Sha256_RsaOaep`, in modes Sign and SignAndEncrypt.
//!
//! Only the OPC UA framing is written here (which bytes are signed, padding, which bytes
//! are encrypted, key derivation's inputs and order); every primitive (RSA-OAEP with
//! SHA-1, RSA PKCS#1 v1.5 with SHA-256, HMAC-SHA256, AES-CBC) is RustCrypto's.
//!
//! A chunk is protected after `wire` wrote it in plain text (header, security header,
//! sequence header, body) and unprotected before `wire` reads it, so the chunking and
//! sequence logic stays the same for every policy.

use aes::{Aes128, Aes256};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::wire::HEADER_LEN;

/// AES block size, the same for both policies.
const BLOCK: usize = 16;
/// HMAC-SHA256 signature size of symmetric chunks.
const SYMMETRIC_SIGNATURE: usize = 32;
/// RSA-OAEP with SHA-1 takes this many bytes less than the key size per block.
const OAEP_SHA1_OVERHEAD: usize = 2 * 20 + 2;

/// A security failure: a signature that does not verify, a chunk that does not decrypt,
/// or a key the policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// The chunk's signature does not match: tampered, or keys that disagree.
    #[error("the signature of a {0} chunk does not verify")]
    Signature(&'static str),
    /// The chunk cannot be decrypted or its padding is wrong.
    #[error("cannot decrypt a {0} chunk: {1}")]
    Decrypt(&'static str, String),
    /// A key or certificate unfit for the policy.
    #[error("{0}")]
    Key(String),
}

/// A signing security policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Basic256Sha256,
    Aes128Sha256RsaOaep,
}

impl Policy {
    pub const fn uri(self) -> &'static str {
        match self {
            Policy::Basic256Sha256 => "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
            Policy::Aes128Sha256RsaOaep => {
                "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"
            }
        }
    }

    pub fn from_uri(uri: &str) -> Option<Policy> {
        [Policy::Basic256Sha256, Policy::Aes128Sha256RsaOaep]
            .into_iter()
            .find(|p| p.uri() == uri)
    }

    /// The symmetric encryption key length (AES-256 or AES-128).
    pub const fn encrypting_key_len(self) -> usize {
        match self {
            Policy::Basic256Sha256 => 32,
            Policy::Aes128Sha256RsaOaep => 16,
        }
    }

    /// The symmetric signing key length (HMAC-SHA256 for both).
    pub const fn signing_key_len(self) -> usize {
        32
    }

    /// The length of the nonces exchanged in OpenSecureChannel.
    pub const fn nonce_len(self) -> usize {
        32
    }

    /// A fresh random nonce for OpenSecureChannel or CreateSession.
    pub fn nonce(self) -> Result<Vec<u8>, SecurityError> {
        let mut nonce = vec![0; self.nonce_len()];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| SecurityError::Key(format!("no random source: {e}")))?;
        Ok(nonce)
    }
}

/// Whether chunks are signed only, or signed and encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sign,
    SignAndEncrypt,
}

/// P_SHA256 of Part 6 §6.7.5 (the TLS 1.2 PRF without label): `len` bytes from
/// HMAC-SHA256 chained over `seed`.
pub fn p_sha256(secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let hmac = |parts: &[&[u8]]| {
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(),
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    };
    let mut out = Vec::with_capacity(len + 32);
    let mut a = hmac(&[seed]);
    while out.len() < len && !a.is_empty() {
        out.extend_from_slice(&hmac(&[&a, seed]));
        a = hmac(&[&a]);
    }
    out.truncate(len);
    out
}

/// One direction's symmetric keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    policy: Policy,
    signing: Vec<u8>,
    encrypting: Vec<u8>,
    iv: [u8; BLOCK],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keys")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The keys of one direction (§6.7.5): the client's keys are derived with the
    /// server's nonce as secret and the client's as seed, the server's the other way.
    pub fn derive(policy: Policy, secret: &[u8], seed: &[u8]) -> Keys {
        let (s, e) = (policy.signing_key_len(), policy.encrypting_key_len());
        let bytes = p_sha256(secret, seed, s + e + BLOCK);
        let mut iv = [0; BLOCK];
        if let Some(tail) = bytes.get(s + e..s + e + BLOCK) {
            iv.copy_from_slice(tail);
        }
        Keys {
            policy,
            signing: bytes.get(..s).unwrap_or_default().to_vec(),
            encrypting: bytes.get(s..s + e).unwrap_or_default().to_vec(),
            iv,
        }
    }

    /// The client's (sending) and server's (receiving) keys from both nonces.
    pub fn pair(policy: Policy, client_nonce: &[u8], server_nonce: &[u8]) -> (Keys, Keys) {
        (
            Keys::derive(policy, server_nonce, client_nonce),
            Keys::derive(policy, client_nonce, server_nonce),
        )
    }

    fn hmac(&self) -> Result<Hmac<Sha256>, SecurityError> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.signing)
            .map_err(|e| SecurityError::Key(format!("signing key: {e}")))
    }

    fn encrypt(&self, buf: &mut [u8]) -> Result<(), SecurityError> {
        let bad = |e: String| SecurityError::Key(format!("encryption: {e}"));
        let len = buf.len();
        match self.policy {
            Policy::Basic256Sha256 => {
                cbc::Encryptor::<Aes256>::new_from_slices(&self.encrypting, &self.iv)
                    .map_err(|e| bad(e.to_string()))?
                    .encrypt_padded_mut::<NoPadding>(buf, len)
                    .map(|_| ())
                    .map_err(|e| bad(e.to_string()))
            }
            Policy::Aes128Sha256RsaOaep => {
                cbc::Encryptor::<Aes128>::new_from_slices(&self.encrypting, &self.iv)
                    .map_err(|e| bad(e.to_string()))?
                    .encrypt_padded_mut::<NoPadding>(buf, len)
                    .map(|_| ())
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }

    fn decrypt(&self, buf: &mut [u8]) -> Result<(), SecurityError> {
        let bad = |e: String| SecurityError::Decrypt("symmetric", e);
        match self.policy {
            Policy::Basic256Sha256 => {
                cbc::Decryptor::<Aes256>::new_from_slices(&self.encrypting, &self.iv)
                    .map_err(|e| bad(e.to_string()))?
                    .decrypt_padded_mut::<NoPadding>(buf)
                    .map(|_| ())
                    .map_err(|e| bad(e.to_string()))
            }
            Policy::Aes128Sha256RsaOaep => {
                cbc::Decryptor::<Aes128>::new_from_slices(&self.encrypting, &self.iv)
                    .map_err(|e| bad(e.to_string()))?
                    .decrypt_padded_mut::<NoPadding>(buf)
                    .map(|_| ())
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }
}

fn set_size(chunk: &mut [u8], size: usize) -> Result<(), SecurityError> {
    let size =
        u32::try_from(size).map_err(|_| SecurityError::Key("a chunk over 4 GiB".to_owned()))?;
    match chunk.get_mut(4..HEADER_LEN) {
        Some(field) => field.copy_from_slice(&size.to_le_bytes()),
        None => {
            return Err(SecurityError::Key(
                "a chunk shorter than its header".to_owned(),
            ));
        }
    }
    Ok(())
}

/// How many more bytes a symmetric chunk of `plain` bytes (sequence header and body)
/// takes once protected: padding and signature.
#[cfg(test)]
fn symmetric_overhead(mode: Mode) -> usize {
    match mode {
        Mode::Sign => SYMMETRIC_SIGNATURE,
        // The padding size byte plus at most a block of padding.
        Mode::SignAndEncrypt => SYMMETRIC_SIGNATURE + 1 + BLOCK,
    }
}

/// Signs (and encrypts) a plain MSG/CLO chunk; `offset` is where the sequence header
/// starts (the encrypted part begins there).
pub fn protect_symmetric(
    mut chunk: Vec<u8>,
    offset: usize,
    keys: &Keys,
    mode: Mode,
) -> Result<Vec<u8>, SecurityError> {
    if chunk.len() < offset || offset < HEADER_LEN {
        return Err(SecurityError::Key(
            "a chunk shorter than its headers".to_owned(),
        ));
    }
    if mode == Mode::SignAndEncrypt {
        let plain = chunk.len() - offset + 1 + SYMMETRIC_SIGNATURE;
        let padding = (BLOCK - plain % BLOCK) % BLOCK;
        // PaddingSize, then that many bytes of its value (§6.7.2.5).
        chunk.extend(std::iter::repeat_n(padding as u8, padding + 1));
    }
    let len = chunk.len() + SYMMETRIC_SIGNATURE;
    set_size(&mut chunk, len)?;
    let mut mac = keys.hmac()?;
    mac.update(&chunk);
    chunk.extend_from_slice(&mac.finalize().into_bytes());
    if mode == Mode::SignAndEncrypt {
        keys.encrypt(&mut chunk[offset..])?;
    }
    Ok(chunk)
}

/// Decrypts (if encrypted) and verifies a MSG/CLO chunk from the server; returns the
/// plain chunk with its size, without padding and signature, for `wire` to read.
pub fn unprotect_symmetric(
    frame: &[u8],
    offset: usize,
    keys: &Keys,
    mode: Mode,
) -> Result<Vec<u8>, SecurityError> {
    let mut chunk = frame.to_vec();
    if chunk.len() < offset + SYMMETRIC_SIGNATURE {
        return Err(SecurityError::Decrypt("symmetric", "too short".to_owned()));
    }
    if mode == Mode::SignAndEncrypt {
        keys.decrypt(&mut chunk[offset..])?;
    }
    let signed = chunk.len() - SYMMETRIC_SIGNATURE;
    let mut mac = keys.hmac()?;
    mac.update(&chunk[..signed]);
    mac.verify_slice(&chunk[signed..])
        .map_err(|_| SecurityError::Signature("symmetric"))?;
    chunk.truncate(signed);
    if mode == Mode::SignAndEncrypt {
        strip_padding(&mut chunk, offset, false, "symmetric")?;
    }
    let len = chunk.len();
    set_size(&mut chunk, len)?;
    Ok(chunk)
}

/// Removes PaddingSize, the padding and (for keys over 2048 bits) ExtraPaddingSize from
/// the end of `chunk`, checking every padding byte.
fn strip_padding(
    chunk: &mut Vec<u8>,
    offset: usize,
    extra: bool,
    what: &'static str,
) -> Result<(), SecurityError> {
    let bad = |why: &str| SecurityError::Decrypt(what, why.to_owned());
    let mut end = chunk.len();
    let high = if extra {
        end = end.checked_sub(1).ok_or_else(|| bad("no padding"))?;
        usize::from(chunk[end])
    } else {
        0
    };
    let low = *chunk
        .get(end.wrapping_sub(1))
        .ok_or_else(|| bad("no padding"))?;
    let count = (high << 8) | usize::from(low);
    // The padding bytes and the PaddingSize byte before them all hold the low byte.
    let start = end
        .checked_sub(count + 1)
        .filter(|start| *start >= offset)
        .ok_or_else(|| bad("padding longer than the chunk"))?;
    if chunk[start..end].iter().any(|b| *b != low) {
        return Err(bad("inconsistent padding"));
    }
    chunk.truncate(start);
    Ok(())
}

/// The SHA-1 thumbprint of a DER certificate, as OPC UA names a receiver certificate.
pub fn thumbprint(der: &[u8]) -> [u8; 20] {
    Sha1::digest(der).into()
}

/// The thumbprint as upper-case hex, as error messages and specs write it.
pub fn thumbprint_hex(der: &[u8]) -> String {
    thumbprint(der).iter().map(|b| format!("{b:02X}")).collect()
}

/// The DER of the first certificate in a PEM text.
pub fn certificate_from_pem(pem: &[u8]) -> Result<Vec<u8>, SecurityError> {
    use x509_cert::der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(pem)
        .map_err(|e| SecurityError::Key(format!("not a PEM certificate: {e}")))?;
    cert.to_der()
        .map_err(|e| SecurityError::Key(format!("the certificate: {e}")))
}

/// An RSA private key from PEM, PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
pub fn private_key_from_pem(pem: &[u8]) -> Result<RsaPrivateKey, SecurityError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let text = std::str::from_utf8(pem)
        .map_err(|_| SecurityError::Key("the key is not PEM text".to_owned()))?;
    RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(text))
        .map_err(|e| SecurityError::Key(format!("not an RSA private key in PEM: {e}")))
}

/// The RSA public key of a DER certificate.
pub fn public_key(cert: &[u8]) -> Result<RsaPublicKey, SecurityError> {
    use rsa::pkcs8::DecodePublicKey;
    use x509_cert::der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(cert)
        .map_err(|e| SecurityError::Key(format!("not a DER certificate: {e}")))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| SecurityError::Key(format!("the certificate's key: {e}")))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| SecurityError::Key(format!("the certificate's key is not RSA: {e}")))
}

/// The size of the key of a generated application certificate: the smallest both
/// policies accept (Basic256Sha256 and Aes128_Sha256_RsaOaep take 2048 to 4096 bits).
pub const GENERATED_KEY_BITS: usize = 2048;

/// Looks for a random prime of `bits` bits (a multiple of 8; the top two bits set, so
/// two of them make a modulus of exactly twice the bits) until `out_of_time` says stop,
/// `None` if none turned up by then. Key generation is done in slices this way because
/// finding a 1024-bit prime in a guest takes from a fraction of a second to several,
/// and one guest call must end well inside the limb's call timeout. The test is the one
/// `rsa`'s own key generation uses (num-bigint-dig's, 20 Miller-Rabin rounds and a Lucas
/// test).
pub fn find_prime(bits: usize, mut out_of_time: impl FnMut() -> bool) -> Option<rsa::BigUint> {
    let mut bytes = vec![0u8; bits / 8];
    let last = bytes.len().checked_sub(1)?;
    while !out_of_time() {
        OsRng.fill_bytes(&mut bytes);
        bytes[0] |= 0xc0;
        bytes[last] |= 1;
        let candidate = rsa::BigUint::from_bytes_be(&bytes);
        if num_bigint_dig::prime::probably_prime(&candidate, 20) {
            return Some(candidate);
        }
    }
    None
}

/// The RSA key of two primes [`find_prime`] found, with the public exponent 65537; an
/// error when they do not make a valid key (then find another).
pub fn key_from_primes(p: rsa::BigUint, q: rsa::BigUint) -> Result<RsaPrivateKey, SecurityError> {
    let key = RsaPrivateKey::from_p_q(p, q, rsa::BigUint::from(65_537u32))
        .map_err(|e| SecurityError::Key(format!("the primes make no key: {e}")))?;
    key.validate()
        .map_err(|e| SecurityError::Key(format!("the primes make no key: {e}")))?;
    Ok(key)
}

/// A self-signed application instance certificate (Part 6 §6.2.2) for `key`, for a
/// client that was given none: SHA-256, valid from a day before `now_s` (seconds since
/// the epoch, so a server whose clock is a little behind still takes it) for ten years,
/// the application URI in subjectAltName, and the key and extended key usages OPC UA
/// servers check. Returns the certificate (DER).
pub fn certificate_for(
    key: &RsaPrivateKey,
    application_uri: &str,
    common_name: &str,
    now_s: u64,
) -> Result<Vec<u8>, SecurityError> {
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::Encode;
    use x509_cert::der::asn1::{GeneralizedTime, Ia5String};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::{Time, Validity};

    let failed = |what: &str, e: &dyn std::fmt::Display| {
        SecurityError::Key(format!(
            "cannot make the application certificate ({what}): {e}"
        ))
    };
    const DAY_S: u64 = 86_400;
    let at = |s: u64| {
        GeneralizedTime::from_unix_duration(Duration::from_secs(s))
            .map(Time::GeneralTime)
            .map_err(|e| failed("validity", &e))
    };
    let validity = Validity {
        not_before: at(now_s.saturating_sub(DAY_S))?,
        not_after: at(now_s + 3_650 * DAY_S)?,
    };
    // A positive 16-byte serial, random so that two generated certificates differ.
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| failed("serial", &e))?;
    // RFC 4514 text: escape what would end the attribute.
    let cn: String = common_name
        .chars()
        .flat_map(|c| match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let subject = Name::from_str(&format!("CN={cn},O=Octopus")).map_err(|e| failed("name", &e))?;
    let public = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())
        .map_err(|e| failed("public key", &e))?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let mut builder = CertificateBuilder::new(
        Profile::Leaf {
            issuer: subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: true,
        },
        serial,
        validity,
        subject,
        public,
        &signer,
    )
    .map_err(|e| failed("builder", &e))?;
    let uri = Ia5String::new(application_uri).map_err(|e| failed("application URI", &e))?;
    builder
        .add_extension(&SubjectAltName(vec![
            GeneralName::UniformResourceIdentifier(uri),
        ]))
        .map_err(|e| failed("subjectAltName", &e))?;
    builder
        .add_extension(&ExtendedKeyUsage(vec![
            const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
            const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
        ]))
        .map_err(|e| failed("extendedKeyUsage", &e))?;
    let cert = builder
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| failed("signature", &e))?;
    cert.to_der().map_err(|e| failed("encoding", &e))
}

/// A PKCS#8 DER encoding of `key`, to keep it in the device's state.
pub fn private_key_to_der(key: &RsaPrivateKey) -> Result<Vec<u8>, SecurityError> {
    use rsa::pkcs8::EncodePrivateKey;
    key.to_pkcs8_der()
        .map(|doc| doc.as_bytes().to_vec())
        .map_err(|e| SecurityError::Key(format!("cannot encode the key: {e}")))
}

/// The key [`private_key_to_der`] wrote.
pub fn private_key_from_der(der: &[u8]) -> Result<RsaPrivateKey, SecurityError> {
    use rsa::pkcs8::DecodePrivateKey;
    RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|e| SecurityError::Key(format!("not a PKCS#8 RSA key: {e}")))
}

/// A DER certificate as PEM, for a log line an operator can copy into a trust list.
pub fn certificate_to_pem(der: &[u8]) -> Result<String, SecurityError> {
    use x509_cert::der::{Decode, EncodePem, pem::LineEnding};
    x509_cert::Certificate::from_der(der)
        .and_then(|c| c.to_pem(LineEnding::LF))
        .map_err(|e| SecurityError::Key(format!("the certificate: {e}")))
}

/// An RSA PKCS#1 v1.5 signature with SHA-256 (asymmetric chunks, session signatures).
pub fn rsa_sign(key: &RsaPrivateKey, data: &[u8]) -> Result<Vec<u8>, SecurityError> {
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data))
        .map_err(|e| SecurityError::Key(format!("cannot sign: {e}")))
}

/// Verifies an RSA PKCS#1 v1.5 SHA-256 signature.
pub fn rsa_verify(key: &RsaPublicKey, data: &[u8], signature: &[u8]) -> bool {
    key.verify(
        Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(data),
        signature,
    )
    .is_ok()
}

/// Encrypts `data` for `key` with RSA-OAEP SHA-1, block by block (asymmetric chunks,
/// encrypted user tokens).
pub fn rsa_encrypt(key: &RsaPublicKey, data: &[u8]) -> Result<Vec<u8>, SecurityError> {
    let block = key.size().saturating_sub(OAEP_SHA1_OVERHEAD);
    if block == 0 {
        return Err(SecurityError::Key(
            "an RSA key too small for OAEP".to_owned(),
        ));
    }
    let mut out = Vec::with_capacity(data.len().div_ceil(block) * key.size());
    for piece in data.chunks(block) {
        let sealed = key
            .encrypt(&mut OsRng, Oaep::new::<Sha1>(), piece)
            .map_err(|e| SecurityError::Key(format!("cannot encrypt: {e}")))?;
        out.extend_from_slice(&sealed);
    }
    Ok(out)
}

fn rsa_decrypt(key: &RsaPrivateKey, data: &[u8]) -> Result<Vec<u8>, SecurityError> {
    let size = key.size();
    if size == 0 || !data.len().is_multiple_of(size) {
        return Err(SecurityError::Decrypt(
            "asymmetric",
            format!("{} bytes are not whole {size}-byte blocks", data.len()),
        ));
    }
    let mut out = Vec::with_capacity(data.len());
    for piece in data.chunks(size) {
        let plain = key
            .decrypt(Oaep::new::<Sha1>(), piece)
            .map_err(|e| SecurityError::Decrypt("asymmetric", e.to_string()))?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

/// Signs and encrypts a plain OPN chunk (§6.7.2.5): padding to whole OAEP blocks of the
/// receiver's key, the sender's signature, then encryption from `offset` (the sequence
/// header) on. OPN chunks are encrypted in both Sign and SignAndEncrypt.
pub fn protect_asymmetric(
    mut chunk: Vec<u8>,
    offset: usize,
    own: &RsaPrivateKey,
    peer: &RsaPublicKey,
) -> Result<Vec<u8>, SecurityError> {
    if chunk.len() < offset || offset < HEADER_LEN {
        return Err(SecurityError::Key(
            "a chunk shorter than its headers".to_owned(),
        ));
    }
    let block = peer.size().saturating_sub(OAEP_SHA1_OVERHEAD);
    if block == 0 {
        return Err(SecurityError::Key(
            "the server's RSA key is too small".to_owned(),
        ));
    }
    let extra = peer.size() > 256;
    let signature_len = own.size();
    let plain = chunk.len() - offset + 1 + usize::from(extra) + signature_len;
    let padding = (block - plain % block) % block;
    chunk.push(padding as u8);
    chunk.extend(std::iter::repeat_n(padding as u8, padding));
    if extra {
        chunk.push((padding >> 8) as u8);
    }
    let encrypted_len = (chunk.len() - offset + signature_len) / block * peer.size();
    set_size(&mut chunk, offset + encrypted_len)?;
    let signature = rsa_sign(own, &chunk)?;
    chunk.extend_from_slice(&signature);
    let sealed = rsa_encrypt(peer, &chunk[offset..])?;
    chunk.truncate(offset);
    chunk.extend_from_slice(&sealed);
    Ok(chunk)
}

/// Decrypts and verifies an OPN chunk from the server; returns the plain chunk (size
/// fixed, padding and signature gone) for `wire` to read.
pub fn unprotect_asymmetric(
    frame: &[u8],
    offset: usize,
    own: &RsaPrivateKey,
    peer: &RsaPublicKey,
) -> Result<Vec<u8>, SecurityError> {
    let sealed = frame
        .get(offset..)
        .ok_or_else(|| SecurityError::Decrypt("asymmetric", "too short".to_owned()))?;
    let mut chunk = frame[..offset].to_vec();
    chunk.extend_from_slice(&rsa_decrypt(own, sealed)?);
    let signature_len = peer.size();
    let signed = chunk
        .len()
        .checked_sub(signature_len)
        .filter(|signed| *signed >= offset)
        .ok_or_else(|| {
            SecurityError::Decrypt("asymmetric", "no room for a signature".to_owned())
        })?;
    if !rsa_verify(peer, &chunk[..signed], &chunk[signed..]) {
        return Err(SecurityError::Signature("asymmetric"));
    }
    chunk.truncate(signed);
    strip_padding(&mut chunk, offset, own.size() > 256, "asymmetric")?;
    let len = chunk.len();
    set_size(&mut chunk, len)?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain chunk as `wire` writes it: header, channel/token IDs, sequence header,
    /// body.
    fn plain(kind: &[u8; 3], body: &[u8]) -> (Vec<u8>, usize) {
        let mut chunk = kind.to_vec();
        chunk.push(b'F');
        chunk.extend_from_slice(&0u32.to_le_bytes());
        chunk.extend_from_slice(&7u32.to_le_bytes()); // channel
        chunk.extend_from_slice(&3u32.to_le_bytes()); // token
        let offset = chunk.len();
        chunk.extend_from_slice(&5u32.to_le_bytes()); // sequence
        chunk.extend_from_slice(&9u32.to_le_bytes()); // request
        chunk.extend_from_slice(body);
        let len = chunk.len();
        set_size(&mut chunk, len).unwrap();
        (chunk, offset)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn p_sha256_is_the_tls12_prf() {
        // The TLS 1.2 PRF SHA-256 test vector (P_SHA256 over label + seed).
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let mut seed = b"test label".to_vec();
        seed.extend(hex("a0ba9f936cda311827a6f796ffd5198c"));
        let out = p_sha256(&secret, &seed, 100);
        assert_eq!(out.len(), 100);
        assert_eq!(
            out[..32],
            hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")[..]
        );
    }

    #[test]
    fn keys_split_and_directions_differ() {
        let (client, server) = Keys::pair(Policy::Basic256Sha256, &[1; 32], &[2; 32]);
        assert_eq!(client.signing.len(), 32);
        assert_eq!(client.encrypting.len(), 32);
        assert_ne!(client, server);
        let all = p_sha256(&[2; 32], &[1; 32], 80);
        assert_eq!(client.signing, all[..32]);
        assert_eq!(client.encrypting, all[32..64]);
        assert_eq!(client.iv, all[64..80]);
        let (aes128, _) = Keys::pair(Policy::Aes128Sha256RsaOaep, &[1; 32], &[2; 32]);
        assert_eq!(aes128.encrypting, all[32..48]);
        assert_eq!(aes128.iv, all[48..64]);
    }

    #[test]
    fn symmetric_round_trip_hides_the_body_and_catches_tampering() {
        let secret = b"a value nobody may read on the wire";
        for policy in [Policy::Basic256Sha256, Policy::Aes128Sha256RsaOaep] {
            let (keys, other) = Keys::pair(policy, &[1; 32], &[2; 32]);
            for len in [0, 1, 14, 15, 16, 17, 100] {
                let mut body = secret.to_vec();
                body.resize(secret.len() + len, 0xAB);
                let (chunk, offset) = plain(b"MSG", &body);
                let sealed =
                    protect_symmetric(chunk.clone(), offset, &keys, Mode::SignAndEncrypt).unwrap();
                assert_eq!(
                    u32::from_le_bytes(sealed[4..8].try_into().unwrap()) as usize,
                    sealed.len()
                );
                assert_eq!((sealed.len() - offset) % BLOCK, 0);
                assert!(sealed.len() <= chunk.len() + symmetric_overhead(Mode::SignAndEncrypt));
                assert!(!sealed.windows(secret.len()).any(|w| w == secret));
                assert_eq!(sealed[..offset - 4][..4], chunk[..4]);
                let opened =
                    unprotect_symmetric(&sealed, offset, &keys, Mode::SignAndEncrypt).unwrap();
                assert_eq!(opened, chunk);
                // The other direction's keys do not open it.
                assert!(
                    unprotect_symmetric(&sealed, offset, &other, Mode::SignAndEncrypt).is_err()
                );
                let mut tampered = sealed.clone();
                let last = tampered.len() - 40;
                tampered[last] ^= 1;
                assert!(
                    unprotect_symmetric(&tampered, offset, &keys, Mode::SignAndEncrypt).is_err()
                );
            }
        }
    }

    #[test]
    fn sign_only_leaves_the_body_readable_but_signed() {
        let (keys, _) = Keys::pair(Policy::Basic256Sha256, &[3; 32], &[4; 32]);
        let (chunk, offset) = plain(b"MSG", b"visible");
        let signed = protect_symmetric(chunk.clone(), offset, &keys, Mode::Sign).unwrap();
        assert_eq!(signed.len(), chunk.len() + symmetric_overhead(Mode::Sign));
        assert!(signed.windows(7).any(|w| w == b"visible"));
        assert_eq!(
            unprotect_symmetric(&signed, offset, &keys, Mode::Sign).unwrap(),
            chunk
        );
        let mut tampered = signed.clone();
        tampered[offset + 8] ^= 1;
        assert_eq!(
            unprotect_symmetric(&tampered, offset, &keys, Mode::Sign),
            Err(SecurityError::Signature("symmetric"))
        );
        assert!(unprotect_symmetric(&signed[..20], offset, &keys, Mode::Sign).is_err());
    }

    #[test]
    fn asymmetric_round_trip_between_two_keys() {
        // 1024-bit keys keep the debug-build key generation short; the framing is the
        // same for every size up to 2048 bits.
        let client = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let server = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let (chunk, offset) = plain(b"OPN", b"client nonce and request");
        let sealed =
            protect_asymmetric(chunk.clone(), offset, &client, &server.to_public_key()).unwrap();
        assert_eq!(
            u32::from_le_bytes(sealed[4..8].try_into().unwrap()) as usize,
            sealed.len()
        );
        assert_eq!((sealed.len() - offset) % 128, 0);
        assert!(!sealed.windows(12).any(|w| w == b"client nonce"));
        let opened =
            unprotect_asymmetric(&sealed, offset, &server, &client.to_public_key()).unwrap();
        assert_eq!(opened, chunk);
        // Verified against the wrong sender key, or decrypted by the wrong receiver: refused.
        assert!(unprotect_asymmetric(&sealed, offset, &server, &server.to_public_key()).is_err());
        assert!(unprotect_asymmetric(&sealed, offset, &client, &client.to_public_key()).is_err());
        assert!(
            unprotect_asymmetric(
                &sealed[..offset + 5],
                offset,
                &server,
                &client.to_public_key()
            )
            .is_err()
        );
    }

    #[test]
    fn padding_is_checked() {
        let mut chunk = vec![0; 10];
        chunk.extend([2, 2, 2]);
        let mut ok = chunk.clone();
        strip_padding(&mut ok, 8, false, "t").unwrap();
        assert_eq!(ok.len(), 10);
        let mut bad = vec![0; 10];
        bad.extend([2, 1, 2]);
        assert!(strip_padding(&mut bad, 8, false, "t").is_err());
        let mut long = vec![0; 10];
        long.push(200);
        assert!(strip_padding(&mut long, 8, false, "t").is_err());
        // Extra padding size: 0x0102 bytes of 0x02 after the low byte, then 0x01.
        let mut extra = vec![0; 10];
        extra.extend(std::iter::repeat_n(2u8, 0x103));
        extra.push(1);
        strip_padding(&mut extra, 8, true, "t").unwrap();
        assert_eq!(extra.len(), 10);
    }

    #[test]
    fn primes_are_found_in_slices_and_make_a_key() {
        // Out of time at once: nothing, and nothing is spent.
        assert!(find_prime(256, || true).is_none());
        let mut tries = 0;
        let p = find_prime(256, || {
            tries += 1;
            tries > 100_000
        })
        .unwrap();
        assert_eq!(p.bits(), 256, "the top bits are set");
        let q = loop {
            let q = find_prime(256, || false).unwrap();
            if q != p {
                break q;
            }
        };
        let key = key_from_primes(p.clone(), q).unwrap();
        assert_eq!(key.size(), 64, "a modulus of twice the bits");
        let sealed = rsa_encrypt(&key.to_public_key(), b"x").unwrap();
        assert_eq!(rsa_decrypt(&key, &sealed).unwrap(), b"x");
        assert!(key_from_primes(p.clone(), p).is_err(), "p = q");
    }

    #[test]
    fn thumbprints_and_policies() {
        assert_eq!(
            thumbprint_hex(b"abc"),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            Policy::from_uri("http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"),
            Some(Policy::Aes128Sha256RsaOaep)
        );
        assert_eq!(
            Policy::from_uri("http://opcfoundation.org/UA/SecurityPolicy#None"),
            None
        );
        assert_ne!(
            Policy::Basic256Sha256.nonce().unwrap(),
            Policy::Basic256Sha256.nonce().unwrap()
        );
    }
}
