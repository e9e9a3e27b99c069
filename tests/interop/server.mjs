// Better Auth servers with the JWT plugin on loopback, one per requested signing algorithm,
// all in this one Node process (a start-up costs more than a request).
//
//   node server.mjs EdDSA ES256 ES512 RS256 PS256 EdDSA:rotating
//
// Each argument is an algorithm, optionally ":rotating" for a 1-second key rotation interval.
// Prints one JSON line {"<argument>": "<base URL>", ...} once every server listens, then serves
// until killed. Storage is Better Auth's memory adapter: every start is a fresh issuer.
import { createServer } from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const SECRET = "interop-secret-for-better-auth-only-0123456789abcdef";

async function start(spec) {
  const [alg, mode] = spec.split(":");
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const baseURL = `http://127.0.0.1:${server.address().port}`;
  const auth = betterAuth({
    baseURL,
    secret: SECRET,
    database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
    emailAndPassword: { enabled: true },
    logger: { level: "error" },
    telemetry: { enabled: false },
    plugins: [
      jwt({
        jwks: {
          keyPairConfig: { alg },
          ...(mode === "rotating" ? { rotationInterval: 1 } : {}),
        },
      }),
    ],
  });
  handler = toNodeHandler(auth);
  return [spec, baseURL];
}

const specs = process.argv.slice(2);
const urls = Object.fromEntries(await Promise.all(specs.map(start)));
process.stdout.write(`${JSON.stringify(urls)}\n`);
