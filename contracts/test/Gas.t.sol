// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {WayfareMarket} from "../src/WayfareMarket.sol";

/// @notice `forge snapshot` benchmarks (see contracts/.gas-snapshot). Each test's body is one
///         market call and nothing else: the world is built in the constructor, the arguments are
///         immutables, and setUp leaves the caller pranked (a prank started in setUp lasts into
///         the test). A figure is therefore the call's execution gas as paid by its caller: the
///         cold market account (2,600), the value transfer if any (9,000 less the 2,300 stipend)
///         and the call itself, without the 21,000 transaction base and the calldata bytes.
abstract contract GasBase is MarketFixture {
    WayfareMarket internal immutable MARKET;
    bytes32 internal immutable OPEN_ID; // an Open channel, deposit DEPOSIT
    uint64 internal immutable OFFER_NONCE; // an unused, signed offer
    uint64 internal immutable OFFER_EXPIRY;
    bytes32 internal immutable OFFER_R;
    bytes32 internal immutable OFFER_S;
    uint8 internal immutable OFFER_V;
    bytes32 internal immutable VOUCHER_R; // voucher for OPEN_ID, SETTLE_AMOUNT
    bytes32 internal immutable VOUCHER_S;
    uint8 internal immutable VOUCHER_V;
    address internal immutable BUYER;
    address internal immutable VOUCHER_SIGNER;
    address internal immutable SELLER;

    uint256 internal constant SETTLE_AMOUNT = 0.3 ether;
    uint256 internal constant TOP_UP = 0.5 ether;

    constructor() {
        deployWorld();
        MARKET = market;
        BUYER = buyer;
        SELLER = sellerAcct;
        VOUCHER_SIGNER = voucherSigner;
        beforeSnapshot();
        // an earlier channel, so `open` below is a seller with history (non-zero burn counter)
        openDefault();
        WayfareMarket.Offer memory o = defaultOffer();
        OFFER_NONCE = o.nonce;
        OFFER_EXPIRY = o.expiry;
        (OFFER_V, OFFER_R, OFFER_S) = vm.sign(signerKey, market.hashOffer(o));
        bytes32 id = openDefault();
        OPEN_ID = id;
        (VOUCHER_V, VOUCHER_R, VOUCHER_S) = vm.sign(voucherKey, market.hashVoucher(id, SETTLE_AMOUNT));
    }

    /// @dev Hook for what a suite needs before the measured channels exist.
    function beforeSnapshot() internal virtual {}

    function offerUnderTest() internal view returns (WayfareMarket.Offer memory) {
        return WayfareMarket.Offer({
            seller: SELLER,
            buyer: BUYER,
            service: 1,
            pricePerMiB: 1e12,
            pricePerSecond: 1e10,
            sellerBurn: SELLER_BURN,
            buyerBurn: BUYER_BURN,
            minDeposit: MIN_DEPOSIT,
            paymentInterval: 15,
            nonce: OFFER_NONCE,
            expiry: OFFER_EXPIRY
        });
    }
}

/// @notice Buyer-side calls.
contract GasTest is GasBase {
    function beforeSnapshot() internal override {
        // a closed channel left the buyer a credit to withdraw
        bytes32 done = openDefault();
        vm.prank(signer);
        market.settle(done, 0, "");
    }

    function setUp() public override {
        vm.startPrank(BUYER);
    }

    function test_gas_open() public {
        MARKET.open{value: BUYER_BURN + DEPOSIT}(
            offerUnderTest(), abi.encodePacked(OFFER_R, OFFER_S, OFFER_V), VOUCHER_SIGNER
        );
    }

    function test_gas_topUp() public {
        MARKET.topUp{value: TOP_UP}(OPEN_ID);
    }

    function test_gas_startClose() public {
        MARKET.startClose(OPEN_ID);
    }

    function test_gas_withdraw() public {
        MARKET.withdraw();
    }
}

/// @notice settle by the seller's hot signer with a fresh voucher; neither the seller's payout
///         nor the buyer holds a credit yet (fresh storage for both credits: the worst case).
contract GasSettleTest is GasBase {
    address internal immutable SIGNER;

    constructor() {
        SIGNER = signer;
    }

    function setUp() public override {
        vm.startPrank(SIGNER);
    }

    function test_gas_settle() public {
        MARKET.settle(OPEN_ID, SETTLE_AMOUNT, abi.encodePacked(VOUCHER_R, VOUCHER_S, VOUCHER_V));
    }
}

/// @notice The same settle when the payout and the buyer already hold credits from earlier closes
///         (a seller that withdraws now and then; a returning buyer).
contract GasSettleWarmTest is GasBase {
    address internal immutable SIGNER;

    constructor() {
        SIGNER = signer;
    }

    function beforeSnapshot() internal override {
        bytes32 done = openDefault();
        bytes memory sig = voucherSig(done, 0.1 ether);
        vm.prank(signer);
        market.settle(done, 0.1 ether, sig);
    }

    function setUp() public override {
        vm.startPrank(SIGNER);
    }

    function test_gas_settle_creditsExist() public {
        MARKET.settle(OPEN_ID, SETTLE_AMOUNT, abi.encodePacked(VOUCHER_R, VOUCHER_S, VOUCHER_V));
    }
}
