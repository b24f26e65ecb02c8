//! Signing keys and the tokens minted with them: an issuer's RSA key pair (plus a foreign one
//! for forged tokens), its public JWKS, and RS256 tokens for any merchant(s), scopes or client,
//! including deliberately flawed ones ([`TokenFlaw`]) that a correct verifier must reject. The
//! emulated provider serves these keys, and the users' login signs with them; this module needs
//! neither.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use serde::{Deserialize, Serialize};

/// A deliberate flaw in a minted token. Each one must make a correct verifier reject the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFlaw {
    /// `exp` ten minutes in the past.
    Expired,
    /// `nbf` ten minutes in the future.
    NotYetValid,
    /// `iss` is another provider.
    WrongIssuer,
    /// `aud` is another API.
    WrongAudience,
    /// Signed with the real key but names a `kid` the JWKS does not have.
    UnknownKid,
    /// Names the real `kid` but is signed by another RSA key.
    ForeignKey,
    /// HS256 with the provider's public key as the HMAC secret (the algorithm-confusion attack).
    Hs256,
    /// `alg: none` and no signature.
    AlgNone,
    /// No `merchants` claim.
    NoMerchantClaim,
}

impl TokenFlaw {
    /// Every flaw, for negative tests.
    pub const ALL: [TokenFlaw; 9] = [
        TokenFlaw::Expired,
        TokenFlaw::NotYetValid,
        TokenFlaw::WrongIssuer,
        TokenFlaw::WrongAudience,
        TokenFlaw::UnknownKid,
        TokenFlaw::ForeignKey,
        TokenFlaw::Hs256,
        TokenFlaw::AlgNone,
        TokenFlaw::NoMerchantClaim,
    ];
}

/// The claims of a minted token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject (the caller).
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// The merchants the caller may act for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchants: Option<Vec<String>>,
    /// Space-separated scopes (RFC 8693 / 9068 style).
    pub scope: String,
    /// The OAuth2 client, on client-credentials tokens (RFC 9068); `sub` is the client too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What a minter needs, serialisable so that `harness token` can mint for a running `harness up`.
#[derive(Clone, Serialize, Deserialize)]
pub struct IssuerKeys {
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The audience (`aud`).
    pub audience: String,
    /// Key id of the signing key.
    pub kid: String,
    /// The signing key, PKCS#1 PEM.
    pub private_key_pem: String,
    /// The signing key's public half, PKCS#1 PEM (the HS256 confusion attack uses it).
    pub public_key_pem: String,
    /// Another key, for `TokenFlaw::ForeignKey`.
    pub foreign_private_key_pem: String,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Generates two fresh 2048-bit RSA keys.
    pub fn generate(
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let mut rng = rand::rngs::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA key")?;
        let foreign = rsa::RsaPrivateKey::new(&mut rng, 2048).context("generating an RSA key")?;
        let pem = |k: &rsa::RsaPrivateKey| -> anyhow::Result<String> {
            Ok(k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)?.to_string())
        };
        Ok(Self {
            issuer: issuer.into(),
            audience: audience.into(),
            kid: format!(
                "harness-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            private_key_pem: pem(&key)?,
            public_key_pem: key
                .to_public_key()
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)?,
            foreign_private_key_pem: pem(&foreign)?,
        })
    }

    /// The public JWKS for these keys (the foreign key is not in it).
    pub fn jwks(&self) -> anyhow::Result<JwkSet> {
        let key = EncodingKey::from_rsa_pem(self.private_key_pem.as_bytes())?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(JwkSet { keys: vec![jwk] })
    }

    /// Starts a token for these keys.
    pub fn token(&self) -> TokenRequest<'_> {
        TokenRequest {
            keys: self,
            subject: "harness-user".into(),
            merchants: Vec::new(),
            scopes: Vec::new(),
            ttl: Duration::from_secs(3600),
            flaw: None,
            client: None,
        }
    }
}

/// A token being described; `mint` signs it.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    keys: &'a IssuerKeys,
    subject: String,
    merchants: Vec<String>,
    scopes: Vec<String>,
    ttl: Duration,
    flaw: Option<TokenFlaw>,
    client: Option<String>,
}

impl TokenRequest<'_> {
    /// Makes it a client-credentials token of `client_id`: subject and `client_id` claim are the
    /// client, and it names no merchants (add scopes with [`Self::scope`]).
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        let client_id = client_id.into();
        self.subject = client_id.clone();
        self.client = Some(client_id);
        self
    }

    /// Adds a merchant the token may act for.
    pub fn merchant(mut self, merchant: impl Into<String>) -> Self {
        self.merchants.push(merchant.into());
        self
    }

    /// Adds several merchants.
    pub fn merchants<I: IntoIterator<Item = S>, S: Into<String>>(mut self, merchants: I) -> Self {
        self.merchants.extend(merchants.into_iter().map(Into::into));
        self
    }

    /// Adds a scope (`entries:write`, `entries:read`, `balances:read`, `admin`).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds several scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Sets the lifetime (one hour by default).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Makes the token deliberately bad in one way.
    pub fn flaw(mut self, flaw: TokenFlaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// Signs the token.
    pub fn mint(self) -> anyhow::Result<String> {
        let keys = self.keys;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let mut claims = Claims {
            iss: keys.issuer.clone(),
            aud: keys.audience.clone(),
            sub: self.subject,
            iat: now,
            nbf: now,
            exp: now + ttl,
            merchants: if self.client.is_some() && self.merchants.is_empty() {
                None
            } else {
                Some(self.merchants)
            },
            scope: self.scopes.join(" "),
            client_id: self.client,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(keys.kid.clone());
        let mut signing_pem = keys.private_key_pem.as_str();
        match self.flaw {
            None => {}
            Some(TokenFlaw::Expired) => {
                claims.iat = now - 7200;
                claims.nbf = now - 7200;
                claims.exp = now - 600;
            }
            Some(TokenFlaw::NotYetValid) => claims.nbf = now + 600,
            Some(TokenFlaw::WrongIssuer) => claims.iss = "https://other-issuer.example".into(),
            Some(TokenFlaw::WrongAudience) => claims.aud = "some-other-api".into(),
            Some(TokenFlaw::UnknownKid) => header.kid = Some("unknown-kid".into()),
            Some(TokenFlaw::ForeignKey) => signing_pem = keys.foreign_private_key_pem.as_str(),
            Some(TokenFlaw::NoMerchantClaim) => claims.merchants = None,
            Some(TokenFlaw::Hs256) => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(keys.kid.clone());
                let secret = EncodingKey::from_secret(keys.public_key_pem.as_bytes());
                return Ok(jsonwebtoken::encode(&header, &claims, &secret)?);
            }
            Some(TokenFlaw::AlgNone) => {
                let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": keys.kid});
                return Ok(format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
                ));
            }
        }
        let key = EncodingKey::from_rsa_pem(signing_pem.as_bytes())?;
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    }
}
