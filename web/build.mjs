// Builds dist/dialtone.js: one IIFE bundle of sdk/ and SIP.js. Same inputs, same bytes.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const sipjs = JSON.parse(readFileSync(new URL('./node_modules/sip.js/package.json', import.meta.url)));
const sipjsLicense = readFileSync(new URL('./node_modules/sip.js/LICENSE.md', import.meta.url), 'utf8').trim();

const banner = `/*! dialtone.js: browser calling for Dialtone (Apache-2.0). Built from web/sdk; do not edit.
 *
 * Includes SIP.js ${sipjs.version} (https://sipjs.com), under this licence:
 *
${sipjsLicense.split('\n').map((line) => (` * ${line}`).trimEnd()).join('\n')}
 */`;

const here = new URL('.', import.meta.url).pathname;

await build({
  // Paths in the bundle's comments are relative to this folder wherever the build runs from.
  absWorkingDir: here,
  entryPoints: ['sdk/index.js'],
  outfile: 'dist/dialtone.js',
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome100', 'firefox100', 'safari15'],
  charset: 'utf8',
  legalComments: 'none',
  banner: { js: banner },
  logLevel: 'warning',
  // SIP.js's own `version` export lags its package version.
  define: { __SIPJS_VERSION__: JSON.stringify(sipjs.version) },
});
