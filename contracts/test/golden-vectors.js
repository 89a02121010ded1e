#!/usr/bin/env node
// Computes the EIP-712 golden vectors of test/Registry.t.sol (test_goldenVectors) without
// Solidity: plain keccak256 (js-sha3, installed with solc) over hand-built encodings.
// The Rust client (crates/wayfare-proto) can assert the same values.
'use strict';
const { keccak256 } = require('../node_modules/js-sha3');

const hex = (b) => Buffer.from(b).toString('hex');
const k = (buf) => Buffer.from(keccak256.arrayBuffer(buf));
const word = (n) => Buffer.from(BigInt(n).toString(16).padStart(64, '0'), 'hex');
const addr = (a) => word(BigInt(a));
const str = (s) => k(Buffer.from(s, 'utf8'));

const chainId = 31337n;
const market = '0x000000000000000000000000000000000000face';
const offer = {
  seller: '0x1111111111111111111111111111111111111111',
  buyer: '0x2222222222222222222222222222222222222222',
  service: 1n,
  pricePerMiB: 1000000000000n,
  pricePerSecond: 10000000000n,
  sellerBurn: 10000000000000000n,
  buyerBurn: 20000000000000000n,
  minDeposit: 100000000000000000n,
  paymentInterval: 15n,
  nonce: 7n,
  expiry: 1700000600n,
};
const amount = 123456789n;

const domain = k(Buffer.concat([
  str('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
  str('Wayfare'), str('1'), word(chainId), addr(market),
]));
const digest = (structHash) => k(Buffer.concat([Buffer.from([0x19, 0x01]), domain, structHash]));
const offerType = 'Offer(address seller,address buyer,uint8 service,uint128 pricePerMiB,uint128 pricePerSecond,' +
  'uint128 sellerBurn,uint128 buyerBurn,uint128 minDeposit,uint32 paymentInterval,uint64 nonce,uint64 expiry)';
const offerStruct = k(Buffer.concat([
  str(offerType), addr(offer.seller), addr(offer.buyer), word(offer.service), word(offer.pricePerMiB),
  word(offer.pricePerSecond), word(offer.sellerBurn), word(offer.buyerBurn), word(offer.minDeposit),
  word(offer.paymentInterval), word(offer.nonce), word(offer.expiry),
]));
const channelId = k(Buffer.concat([word(chainId), addr(market), addr(offer.seller), word(offer.nonce)]));
const voucher = digest(k(Buffer.concat([str('Voucher(bytes32 channelId,uint256 amount)'), channelId, word(amount)])));
const consent = digest(k(Buffer.concat([str('CloseConsent(bytes32 channelId,uint256 amount)'), channelId, word(amount)])));

console.log(`domainSeparator   0x${hex(domain)}`);
console.log(`hashOffer         0x${hex(digest(offerStruct))}`);
console.log(`channelId         0x${hex(channelId)}`);
console.log(`hashVoucher       0x${hex(voucher)}`);
console.log(`hashCloseConsent  0x${hex(consent)}`);
