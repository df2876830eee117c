// HS256 verification for the nginx + njs contestant: the signature over
// header.payload with the shared secret, then exp. Returns "1" or "0".
const crypto = require('crypto');
const SECRET = 'compare-secret-compare-secret-0123456789';

function verify(r) {
    const auth = r.headersIn['Authorization'] || '';
    if (!auth.startsWith('Bearer ')) { return '0'; }
    const parts = auth.slice(7).split('.');
    if (parts.length !== 3) { return '0'; }
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    if (header.alg !== 'HS256') { return '0'; }
    const sig = crypto.createHmac('sha256', SECRET).update(parts[0] + '.' + parts[1]).digest('base64url');
    if (sig !== parts[2]) { return '0'; }
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000) { return '0'; }
    return '1';
}

export default { verify };
