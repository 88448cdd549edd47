// Copies axe-core's axe.min.js and its licences to tests/browser/vendor/ (the browser tests inject it), after checking
// the file against the SRI hash axe-core publishes for its version (sri-history.json). Run through `make axe-core`.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const pkg = path.join(__dirname, 'node_modules', 'axe-core');
const out = path.join(__dirname, '..', '..', 'tests', 'browser', 'vendor');
const version = require(path.join(pkg, 'package.json')).version;
const script = fs.readFileSync(path.join(pkg, 'axe.min.js'));
const sri = 'sha256-' + crypto.createHash('sha256').update(script).digest('base64');
const published = require(path.join(pkg, 'sri-history.json'))[version]['axe.min.js'];
if (sri !== published) {
    console.error(`axe.min.js ${version} hashes to ${sri}, axe-core published ${published}`);
    process.exit(1);
}
fs.mkdirSync(out, {recursive: true});
fs.writeFileSync(path.join(out, 'axe.min.js'), script);
for (const name of ['LICENSE', 'LICENSE-3RD-PARTY.txt']) {
    fs.copyFileSync(path.join(pkg, name), path.join(out, 'axe-core-' + name));
}
fs.writeFileSync(path.join(out, 'axe.min.js.sri'), `${sri}\n`);
