//! Organisations, users, roles and API tokens. Tokens are stored only as
//! their sha256; the plain token is shown once, when it is made.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Store, StoreError, decode, encode, key};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Manages users and tokens; everything an api-provider does.
    OrgAdmin,
    /// Creates and deletes releases, runs deploy plans.
    ApiProvider,
    /// Reads.
    Viewer,
}

impl Role {
    /// The role's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org-admin",
            Role::ApiProvider => "api-provider",
            Role::Viewer => "viewer",
        }
    }
}

/// An organisation: every resource belongs to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Organisation {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// A user of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct User {
    /// Its id.
    pub id: u64,
    /// The organisation.
    pub organisation: u64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A stored token: whose it is, never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    user: u64,
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The user's organisation.
    pub organisation: Organisation,
}

/// The first organisation, its admin and the admin's token.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The organisation made.
    pub organisation: Organisation,
    /// Its admin.
    pub admin: User,
    /// The admin's token, in plain text: shown once.
    pub token: String,
}

/// Set in `meta` when the first organisation was made.
const BOOTSTRAPPED: &[u8] = b"bootstrapped";

/// A new random token, `slw_` and 64 hex digits.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    format!("slw_{}", hex::encode(bytes))
}

fn token_key(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    /// On an empty database, creates the first organisation, its `org-admin`
    /// and a token (`admin_token`, or a new random one), all in one
    /// transaction. Does nothing when an organisation exists.
    pub fn bootstrap(
        &self,
        organisation: &str,
        admin_token: Option<&str>,
    ) -> Result<Option<Bootstrapped>, StoreError> {
        if self.meta.get(BOOTSTRAPPED)?.is_some() {
            return Ok(None);
        }
        let organisation = Organisation {
            id: self.next_id()?,
            name: organisation.to_string(),
        };
        let admin = User {
            id: self.next_id()?,
            organisation: organisation.id,
            name: "admin".into(),
            role: Role::OrgAdmin,
        };
        let token = admin_token.map_or_else(new_token, str::to_string);
        let made = Bootstrapped {
            organisation,
            admin,
            token,
        };
        let trees = (&self.meta, &self.organisations, &self.users, &self.tokens);
        let created: Result<bool, TransactionError<()>> =
            trees.transaction(|(meta, organisations, users, tokens)| {
                // Checked again inside: two starts at once make one organisation.
                if meta.get(BOOTSTRAPPED)?.is_some() {
                    return Ok(false);
                }
                meta.insert(BOOTSTRAPPED, &[1])?;
                organisations.insert(&key(made.organisation.id), encode(&made.organisation))?;
                users.insert(&key(made.admin.id), encode(&made.admin))?;
                let record = TokenRecord {
                    user: made.admin.id,
                };
                tokens.insert(token_key(&made.token), encode(&record))?;
                Ok(true)
            });
        match created {
            Ok(true) => Ok(Some(made)),
            Ok(false) | Err(TransactionError::Abort(())) => Ok(None),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }

    /// An organisation by id.
    pub fn organisation(&self, id: u64) -> Result<Option<Organisation>, StoreError> {
        self.organisations
            .get(key(id))?
            .map(|bytes| decode("organisations", &bytes))
            .transpose()
    }

    /// An organisation by name.
    pub fn organisation_named(&self, name: &str) -> Result<Option<Organisation>, StoreError> {
        for entry in self.organisations.iter() {
            let organisation: Organisation = decode("organisations", &entry?.1)?;
            if organisation.name == name {
                return Ok(Some(organisation));
            }
        }
        Ok(None)
    }

    /// Creates another organisation with its own `org-admin` and token.
    pub fn create_organisation(&self, name: &str) -> Result<Bootstrapped, StoreError> {
        let organisation = Organisation {
            id: self.next_id()?,
            name: name.to_string(),
        };
        self.organisations
            .insert(key(organisation.id), encode(&organisation))?;
        let (admin, token) = self.create_user(organisation.id, "admin", Role::OrgAdmin)?;
        Ok(Bootstrapped {
            organisation,
            admin,
            token,
        })
    }

    /// Creates a user with a new token, in one transaction; returns both
    /// (the token in plain text, shown once).
    pub fn create_user(
        &self,
        organisation: u64,
        name: &str,
        role: Role,
    ) -> Result<(User, String), StoreError> {
        let user = User {
            id: self.next_id()?,
            organisation,
            name: name.to_string(),
            role,
        };
        let token = new_token();
        let written: Result<(), TransactionError<()>> =
            (&self.users, &self.tokens).transaction(|(users, tokens)| {
                users.insert(&key(user.id), encode(&user))?;
                tokens.insert(token_key(&token), encode(&TokenRecord { user: user.id }))?;
                Ok(())
            });
        match written {
            Ok(()) => Ok((user, token)),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(())) => unreachable!("nothing aborts"),
        }
    }

    /// The organisation's users.
    pub fn users(&self, organisation: u64) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        for entry in self.users.iter() {
            let user: User = decode("users", &entry?.1)?;
            if user.organisation == organisation {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// A user of the organisation, if it exists.
    pub fn user(&self, organisation: u64, id: u64) -> Result<Option<User>, StoreError> {
        Ok(match self.users.get(key(id))? {
            Some(bytes) => {
                Some(decode::<User>("users", &bytes)?).filter(|u| u.organisation == organisation)
            }
            None => None,
        })
    }

    /// A new token for a user; returned in plain text, stored as its hash.
    pub fn create_token(&self, user: &User) -> Result<String, StoreError> {
        let token = new_token();
        self.tokens
            .insert(token_key(&token), encode(&TokenRecord { user: user.id }))?;
        Ok(token)
    }

    /// Revokes every token of a user, and deletes the user too when `and_user`;
    /// one transaction, on disk before it returns (a crash right after must
    /// not bring a token back). Returns how many tokens were revoked.
    pub fn revoke(&self, user: &User, and_user: bool) -> Result<usize, StoreError> {
        let mut hashes = Vec::new();
        for entry in self.tokens.iter() {
            let (hash, record) = entry?;
            if decode::<TokenRecord>("tokens", &record)?.user == user.id {
                hashes.push(hash);
            }
        }
        let done: Result<(), TransactionError<()>> =
            (&self.users, &self.tokens).transaction(|(users, tokens)| {
                for hash in &hashes {
                    tokens.remove(hash)?;
                }
                if and_user {
                    users.remove(&key(user.id))?;
                }
                Ok(())
            });
        match done {
            Ok(()) => {
                self.db.flush()?;
                Ok(hashes.len())
            }
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(())) => unreachable!("nothing aborts"),
        }
    }

    /// Who holds `token`, if anyone.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let Some(record) = self.tokens.get(token_key(token))? else {
            return Ok(None);
        };
        let record: TokenRecord = decode("tokens", &record)?;
        let Some(user) = self.users.get(key(record.user))? else {
            return Ok(None);
        };
        let user: User = decode("users", &user)?;
        let Some(organisation) = self.organisations.get(key(user.organisation))? else {
            return Ok(None);
        };
        Ok(Some(Principal {
            organisation: decode("organisations", &organisation)?,
            user,
        }))
    }
}
