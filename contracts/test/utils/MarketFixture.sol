// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {TestBase} from "./Cheats.sol";
import {WayfareMarket} from "../../src/WayfareMarket.sol";

/// @notice A deployed market, one registered seller (account, hot signer, payout), one buyer with
///         a per-channel voucher key, a stranger, and helpers to build and sign offers,
///         vouchers and close consents.
abstract contract MarketFixture is TestBase {
    uint64 internal constant PERIOD = 1 hours;
    uint256 internal constant T0 = 1_700_000_000;
    bytes32 internal constant ENC_KEY = keccak256("seller x25519 public key");
    uint128 internal constant SELLER_BURN = 0.01 ether;
    uint128 internal constant BUYER_BURN = 0.02 ether;
    uint128 internal constant MIN_DEPOSIT = 0.1 ether;
    uint256 internal constant DEPOSIT = 1 ether;
    uint256 internal constant SELLER_FUNDS = 1 ether;

    WayfareMarket internal market;
    address internal sink;
    address internal sellerAcct;
    uint256 internal sellerKey;
    address internal signer;
    uint256 internal signerKey;
    address internal payout;
    address internal buyer;
    uint256 internal buyerKey;
    address internal voucherSigner;
    uint256 internal voucherKey;
    address internal stranger;
    uint256 internal strangerKey;
    uint64 internal nextNonce = 1;

    function setUp() public virtual {
        deployWorld();
    }

    /// @dev Deploys the market and registers the seller with SELLER_FUNDS (callable from a
    ///      constructor too, see Gas.t.sol).
    function deployWorld() internal {
        vm.warp(T0);
        (sink,) = makeAccount("sink");
        (sellerAcct, sellerKey) = makeAccount("seller");
        (signer, signerKey) = makeAccount("seller signer");
        (payout,) = makeAccount("seller payout");
        (buyer, buyerKey) = makeAccount("buyer");
        (voucherSigner, voucherKey) = makeAccount("buyer voucher signer");
        (stranger, strangerKey) = makeAccount("stranger");
        market = new WayfareMarket(sink, PERIOD);
        vm.label(address(market), "market");
        vm.deal(sellerAcct, 100 ether);
        vm.deal(buyer, 100 ether);
        vm.deal(stranger, 100 ether);
        vm.deal(signer, 1 ether);
        vm.deal(payout, 1 ether);
        vm.prank(sellerAcct);
        market.registerSeller{value: SELLER_FUNDS}(signer, payout, ENC_KEY, "region=eu-west;v=1");
    }

    // ------------------------------------------------------------------ offers

    function offerFor(address sellerAccount, address buyerAccount) internal returns (WayfareMarket.Offer memory o) {
        o = WayfareMarket.Offer({
            seller: sellerAccount,
            buyer: buyerAccount,
            service: 1,
            pricePerMiB: 1e12,
            pricePerSecond: 1e10,
            sellerBurn: SELLER_BURN,
            buyerBurn: BUYER_BURN,
            minDeposit: MIN_DEPOSIT,
            paymentInterval: 15,
            nonce: nextNonce++,
            expiry: uint64(block.timestamp + 10 minutes)
        });
    }

    function defaultOffer() internal returns (WayfareMarket.Offer memory) {
        return offerFor(sellerAcct, buyer);
    }

    function signOffer(WayfareMarket.Offer memory o, uint256 key) internal view returns (bytes memory) {
        return signDigest(key, market.hashOffer(o));
    }

    function openWith(WayfareMarket.Offer memory o, uint256 deposit) internal returns (bytes32 id) {
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(o.buyer);
        id = market.open{value: o.buyerBurn + deposit}(o, sig, voucherSigner);
    }

    /// @dev A fresh default channel with DEPOSIT deposited.
    function openDefault() internal returns (bytes32) {
        return openWith(defaultOffer(), DEPOSIT);
    }

    // ------------------------------------------------------------------ channel signatures

    function voucherSig(bytes32 id, uint256 amount) internal view returns (bytes memory) {
        return signDigest(voucherKey, market.hashVoucher(id, amount));
    }

    function consentSig(bytes32 id, uint256 amount) internal view returns (bytes memory) {
        return signDigest(signerKey, market.hashCloseConsent(id, amount));
    }

    function info(bytes32 id) internal view returns (WayfareMarket.ChannelInfo memory) {
        return market.channel(id);
    }

    function stateOf(bytes32 id) internal view returns (WayfareMarket.ChannelState) {
        return market.channel(id).state;
    }

    function assertState(bytes32 id, WayfareMarket.ChannelState want) internal view {
        vm.assertEq(uint256(stateOf(id)), uint256(want), "channel state");
    }

    function startCloseAsBuyer(bytes32 id) internal {
        vm.prank(buyer);
        market.startClose(id);
    }

    // ------------------------------------------------------------------ errors

    function errWrongState(bytes32 id, WayfareMarket.ChannelState s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(WayfareMarket.WrongState.selector, id, s);
    }

    function errWrongSigner(address recovered, address expected) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(WayfareMarket.WrongSigner.selector, recovered, expected);
    }
}
