// A real OpenID Connect provider for simyard's single sign-on tests: oidc-provider (an
// OpenID-certified implementation) with one confidential client and fixed accounts.
//
// Everything comes from the environment (tests/oidc/conftest.py sets it):
//   OIDC_PORT            port to listen on (loopback only)
//   OIDC_ISSUER          e.g. http://127.0.0.1:PORT
//   OIDC_CLIENT_ID       the test client...
//   OIDC_CLIENT_SECRET   ...its secret
//   OIDC_REDIRECT_URI    simyard's callback, e.g. http://127.0.0.1:8000/login/sso/callback
//   OIDC_ACCOUNTS        JSON object: login name -> claims (sub defaults to the login name)
//
// The default development interactions give a login page (any password is accepted; the
// login names the account) and a consent page. An account not in OIDC_ACCOUNTS is refused.
// Plain http on 127.0.0.1 is allowed as it is: oidc-provider refuses http redirect URIs of
// web clients only for the implicit flow, and this client uses the code flow (with PKCE).
// The fixture sets NODE_ENV=development; the start-up warnings about development-only keys,
// storage and interactions are expected here.
import { Provider } from "oidc-provider";

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.js: set ${name}`);
    process.exit(2);
  }
  return value;
}

const port = Number(required("OIDC_PORT"));
const issuer = required("OIDC_ISSUER");
const accounts = JSON.parse(required("OIDC_ACCOUNTS"));

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: required("OIDC_CLIENT_ID"),
      client_secret: required("OIDC_CLIENT_SECRET"),
      redirect_uris: [required("OIDC_REDIRECT_URI")],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  async findAccount(ctx, id) {
    const claims = accounts[id];
    if (claims === undefined) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
  // Signs the provider's own cookies (its login session and interaction state).
  cookies: { keys: ["simyard-test-only-cookie-key"] },
});

provider.on("server_error", (ctx, error) => console.error("server_error", error));

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
