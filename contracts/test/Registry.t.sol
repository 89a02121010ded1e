// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {RevertingReceiver} from "./utils/Receivers.sol";
import {WayfareMarket} from "../src/WayfareMarket.sol";

/// @notice Constructor, seller registry and the pure views.
contract RegistryTest is MarketFixture {
    address internal newSeller;
    address internal newSigner;
    address internal newPayout;

    function setUp() public override {
        super.setUp();
        (newSeller,) = makeAccount("new seller");
        (newSigner,) = makeAccount("new signer");
        (newPayout,) = makeAccount("new payout");
        vm.deal(newSeller, 10 ether);
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor_setsSinkAndPeriod() public view {
        vm.assertEq(market.burnSink(), sink);
        vm.assertEq(uint256(market.challengePeriod()), uint256(PERIOD));
        vm.assertEq(market.burnedUnswept(), 0);
    }

    function test_constructor_rejectsChallengePeriodBelow60() public {
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.ChallengePeriodTooShort.selector, uint64(59)));
        new WayfareMarket(sink, 59);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.ChallengePeriodTooShort.selector, uint64(0)));
        new WayfareMarket(sink, 0);
        WayfareMarket m = new WayfareMarket(sink, 60);
        vm.assertEq(uint256(m.challengePeriod()), 60);
    }

    function test_constructor_rejectsChallengePeriodAboveAYear() public {
        uint64 year = 365 days;
        WayfareMarket m = new WayfareMarket(sink, year);
        vm.assertEq(uint256(m.challengePeriod()), year);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.ChallengePeriodTooLong.selector, year + 1));
        new WayfareMarket(sink, year + 1);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.ChallengePeriodTooLong.selector, type(uint64).max));
        new WayfareMarket(sink, type(uint64).max);
    }

    function test_constructor_rejectsItselfAsSink() public {
        address next = createAddress(address(this), vm.getNonce(address(this)));
        vm.expectRevert(WayfareMarket.BurnSinkIsMarket.selector);
        new WayfareMarket(next, 60);
    }

    function test_constructor_acceptsZeroSink() public {
        WayfareMarket m = new WayfareMarket(address(0), 60);
        vm.assertEq(m.burnSink(), address(0));
    }

    // ------------------------------------------------------------------ registerSeller

    function test_registerSeller_storesRecordAndFunds() public {
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerRegistered(newSeller, newSigner, newPayout, bytes32(uint256(7)), "meta");
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerFunded(newSeller, 0.5 ether, 0.5 ether);
        vm.prank(newSeller);
        market.registerSeller{value: 0.5 ether}(newSigner, newPayout, bytes32(uint256(7)), "meta");

        WayfareMarket.SellerInfo memory s = market.seller(newSeller);
        vm.assertEq(s.signer, newSigner);
        vm.assertEq(s.payout, newPayout);
        vm.assertEq(s.encryptionKey, bytes32(uint256(7)));
        vm.assertEq(s.funds, 0.5 ether);
        vm.assertTrue(s.registered);
        vm.assertTrue(s.active);
        vm.assertEq(s.metadata, "meta");
        vm.assertEq(address(market).balance, SELLER_FUNDS + 0.5 ether);
    }

    function test_registerSeller_withoutValue() public {
        vm.prank(newSeller);
        market.registerSeller(newSigner, newPayout, bytes32(0), "");
        WayfareMarket.SellerInfo memory s = market.seller(newSeller);
        vm.assertEq(s.funds, 0);
        vm.assertTrue(s.registered);
    }

    function test_registerSeller_unknownAccountLooksUnregistered() public view {
        WayfareMarket.SellerInfo memory s = market.seller(stranger);
        vm.assertFalse(s.registered);
        vm.assertFalse(s.active);
        vm.assertEq(s.signer, address(0));
    }

    function test_registerSeller_revertsWhenAlreadyRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AlreadyRegistered.selector, sellerAcct));
        vm.prank(sellerAcct);
        market.registerSeller(newSigner, newPayout, bytes32(0), "");
    }

    function test_registerSeller_revertsOnZeroSignerOrPayout() public {
        vm.startPrank(newSeller);
        vm.expectRevert(WayfareMarket.ZeroSigner.selector);
        market.registerSeller(address(0), newPayout, bytes32(0), "");
        vm.expectRevert(WayfareMarket.ZeroPayout.selector);
        market.registerSeller(newSigner, address(0), bytes32(0), "");
        vm.stopPrank();
    }

    function test_registerSeller_revertsOnLongMetadata() public {
        string memory ok = string(new bytes(1024));
        string memory tooLong = string(new bytes(1025));
        vm.prank(newSeller);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.MetadataTooLong.selector, 1025, 1024));
        market.registerSeller(newSigner, newPayout, bytes32(0), tooLong);
        vm.prank(newSeller);
        market.registerSeller(newSigner, newPayout, bytes32(0), ok);
    }

    function test_registerSeller_revertsWhenFundsDontFitUint88() public {
        uint256 tooMuch = uint256(type(uint88).max) + 1;
        vm.deal(newSeller, tooMuch);
        vm.prank(newSeller);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AmountTooLarge.selector, tooMuch, type(uint88).max));
        market.registerSeller{value: tooMuch}(newSigner, newPayout, bytes32(0), "");
    }

    // ------------------------------------------------------------------ updateSeller

    function test_updateSeller_changesRecord() public {
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerUpdated(sellerAcct, signer, newPayout, bytes32(uint256(9)), "new");
        vm.prank(sellerAcct);
        market.updateSeller(signer, newPayout, bytes32(uint256(9)), "new");
        WayfareMarket.SellerInfo memory s = market.seller(sellerAcct);
        vm.assertEq(s.signer, signer);
        vm.assertEq(s.payout, newPayout);
        vm.assertEq(s.encryptionKey, bytes32(uint256(9)));
        vm.assertEq(s.metadata, "new");
        vm.assertEq(s.funds, SELLER_FUNDS, "funds untouched");
    }

    function test_updateSeller_rotatedOutSignerCantComeBack() public {
        vm.startPrank(sellerAcct);
        market.updateSeller(newSigner, payout, ENC_KEY, "");
        vm.assertEq(market.seller(sellerAcct).signer, newSigner);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SignerRetired.selector, signer));
        market.updateSeller(signer, payout, ENC_KEY, "");
        vm.stopPrank();
    }

    function test_updateSeller_revertsForNonSellers() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        market.updateSeller(stranger, stranger, bytes32(0), "");
        // the seller's own signer and payout aren't the seller either
        vm.prank(signer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, signer));
        market.updateSeller(signer, signer, bytes32(0), "");
    }

    function test_updateSeller_revertsOnBadFields() public {
        vm.startPrank(sellerAcct);
        vm.expectRevert(WayfareMarket.ZeroSigner.selector);
        market.updateSeller(address(0), payout, bytes32(0), "");
        vm.expectRevert(WayfareMarket.ZeroPayout.selector);
        market.updateSeller(signer, address(0), bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.MetadataTooLong.selector, 1025, 1024));
        market.updateSeller(signer, payout, bytes32(0), string(new bytes(1025)));
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ funds

    function test_fundSeller_addsFunds() public {
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerFunded(sellerAcct, 2 ether, SELLER_FUNDS + 2 ether);
        vm.prank(sellerAcct);
        market.fundSeller{value: 2 ether}();
        vm.assertEq(market.seller(sellerAcct).funds, SELLER_FUNDS + 2 ether);
    }

    function test_fundSeller_reverts() public {
        vm.prank(sellerAcct);
        vm.expectRevert(WayfareMarket.ZeroAmount.selector);
        market.fundSeller();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        market.fundSeller{value: 1}();
        uint256 tooMuch = uint256(type(uint88).max) - SELLER_FUNDS + 1;
        vm.deal(sellerAcct, tooMuch);
        vm.prank(sellerAcct);
        vm.expectRevert(
            abi.encodeWithSelector(WayfareMarket.AmountTooLarge.selector, SELLER_FUNDS + tooMuch, type(uint88).max)
        );
        market.fundSeller{value: tooMuch}();
    }

    function test_withdrawSellerFunds_paysTheSellerAccount() public {
        uint256 before = sellerAcct.balance;
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerWithdrew(sellerAcct, 0.4 ether, SELLER_FUNDS - 0.4 ether);
        vm.prank(sellerAcct);
        market.withdrawSellerFunds(0.4 ether);
        vm.assertEq(sellerAcct.balance, before + 0.4 ether);
        vm.assertEq(market.seller(sellerAcct).funds, SELLER_FUNDS - 0.4 ether);
        vm.prank(sellerAcct);
        market.withdrawSellerFunds(SELLER_FUNDS - 0.4 ether);
        vm.assertEq(market.seller(sellerAcct).funds, 0);
        vm.assertEq(address(market).balance, 0);
    }

    function test_withdrawSellerFunds_reverts() public {
        vm.startPrank(sellerAcct);
        vm.expectRevert(WayfareMarket.ZeroAmount.selector);
        market.withdrawSellerFunds(0);
        vm.expectRevert(
            abi.encodeWithSelector(WayfareMarket.WithdrawalExceedsFunds.selector, SELLER_FUNDS, SELLER_FUNDS + 1)
        );
        market.withdrawSellerFunds(SELLER_FUNDS + 1);
        vm.stopPrank();
        vm.prank(signer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, signer));
        market.withdrawSellerFunds(1);
    }

    function test_withdrawSellerFunds_revertingAccountKeepsItsFunds() public {
        RevertingReceiver r = new RevertingReceiver();
        vm.deal(address(r), 1 ether);
        vm.prank(address(r));
        market.registerSeller{value: 1 ether}(newSigner, newPayout, bytes32(0), "");
        vm.prank(address(r));
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.TransferFailed.selector, address(r), 0.5 ether));
        market.withdrawSellerFunds(0.5 ether);
        vm.assertEq(market.seller(address(r)).funds, 1 ether);
    }

    // ------------------------------------------------------------------ (de)activation

    function test_deactivateAndReactivate() public {
        vm.expectEmit(address(market));
        emit WayfareMarket.SellerDeactivated(sellerAcct);
        vm.prank(sellerAcct);
        market.deactivateSeller();
        vm.assertFalse(market.seller(sellerAcct).active);
        vm.assertTrue(market.seller(sellerAcct).registered);

        vm.prank(sellerAcct);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerInactive.selector, sellerAcct));
        market.deactivateSeller();

        vm.expectEmit(address(market));
        emit WayfareMarket.SellerReactivated(sellerAcct);
        vm.prank(sellerAcct);
        market.reactivateSeller();
        vm.assertTrue(market.seller(sellerAcct).active);

        vm.prank(sellerAcct);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerActive.selector, sellerAcct));
        market.reactivateSeller();
    }

    function test_deactivate_revertsForNonSellers() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        market.deactivateSeller();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        market.reactivateSeller();
    }

    // ------------------------------------------------------------------ hashing views (independent re-implementation)

    function test_domainSeparator_isEip712() public view {
        vm.assertEq(market.domainSeparator(), expectedDomain(address(market)));
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = market.eip712Domain();
        vm.assertEq(name, "Wayfare");
        vm.assertEq(version, "1");
        vm.assertEq(chainId, block.chainid);
        vm.assertEq(verifying, address(market));
    }

    function test_hashes_matchEip712Digests() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes32 offerStruct = keccak256(
            abi.encode(
                keccak256(
                    "Offer(address seller,address buyer,uint8 service,uint128 pricePerMiB,uint128 pricePerSecond,uint128 sellerBurn,uint128 buyerBurn,uint128 minDeposit,uint32 paymentInterval,uint64 nonce,uint64 expiry)"
                ),
                o.seller,
                o.buyer,
                o.service,
                o.pricePerMiB,
                o.pricePerSecond,
                o.sellerBurn,
                o.buyerBurn,
                o.minDeposit,
                o.paymentInterval,
                o.nonce,
                o.expiry
            )
        );
        bytes32 domain = expectedDomain(address(market));
        vm.assertEq(market.hashOffer(o), keccak256(abi.encodePacked(hex"1901", domain, offerStruct)));

        bytes32 id = keccak256("some channel");
        bytes32 voucherStruct = keccak256(abi.encode(keccak256("Voucher(bytes32 channelId,uint256 amount)"), id, 42));
        vm.assertEq(market.hashVoucher(id, 42), keccak256(abi.encodePacked(hex"1901", domain, voucherStruct)));
        bytes32 consentStruct =
            keccak256(abi.encode(keccak256("CloseConsent(bytes32 channelId,uint256 amount)"), id, 42));
        vm.assertEq(market.hashCloseConsent(id, 42), keccak256(abi.encodePacked(hex"1901", domain, consentStruct)));
        vm.assertNotEq(market.hashVoucher(id, 42), market.hashCloseConsent(id, 42));
    }

    function test_channelId_formula() public view {
        vm.assertEq(
            market.channelId(sellerAcct, 77),
            keccak256(abi.encode(block.chainid, address(market), sellerAcct, uint64(77)))
        );
    }

    /// @dev Fixed vectors shared with the Rust client (crates/wayfare-proto): the market's code
    ///      placed at a fixed address on chain id 31337. EIP712 rebuilds its domain for the new
    ///      address, so the vectors only depend on the inputs below.
    function test_goldenVectors() public {
        address fixedAddress = address(uint160(0xFACE));
        vm.etch(fixedAddress, address(market).code);
        vm.chainId(31337);
        WayfareMarket m = WayfareMarket(fixedAddress);
        WayfareMarket.Offer memory o = WayfareMarket.Offer({
            seller: 0x1111111111111111111111111111111111111111,
            buyer: 0x2222222222222222222222222222222222222222,
            service: 1,
            pricePerMiB: 1_000_000_000_000,
            pricePerSecond: 10_000_000_000,
            sellerBurn: 10_000_000_000_000_000,
            buyerBurn: 20_000_000_000_000_000,
            minDeposit: 100_000_000_000_000_000,
            paymentInterval: 15,
            nonce: 7,
            expiry: 1_700_000_600
        });
        bytes32 id = m.channelId(o.seller, o.nonce);
        vm.assertEq(m.domainSeparator(), GOLDEN_DOMAIN, "domain");
        vm.assertEq(m.hashOffer(o), GOLDEN_OFFER, "offer digest");
        vm.assertEq(id, GOLDEN_CHANNEL_ID, "channel id");
        vm.assertEq(m.hashVoucher(id, 123_456_789), GOLDEN_VOUCHER, "voucher digest");
        vm.assertEq(m.hashCloseConsent(id, 123_456_789), GOLDEN_CONSENT, "consent digest");
    }

    // computed independently by test/golden-vectors.js (keccak256 over hand-built encodings)
    bytes32 internal constant GOLDEN_DOMAIN = 0x9ff194c9de301c81864eb9306bf8971d29f770909683cf607a69ba52c6fb9fc2;
    bytes32 internal constant GOLDEN_OFFER = 0x3b1cfeab6fcb35595a7b6ca973b60e803ede30655b059e249ae3e44d599f141b;
    bytes32 internal constant GOLDEN_CHANNEL_ID = 0x2f36510bad1bc06261c7d32f589ac8867a7695c1b0b3659d0c573bf92d7a9cdb;
    bytes32 internal constant GOLDEN_VOUCHER = 0x95335b48f0e1b5a24029b88e0bc1ca36c5aac598914664efce02abc7999e97e4;
    bytes32 internal constant GOLDEN_CONSENT = 0xbae54d56a3bbfe84bc515f9a3458d196b2f3cc45e2b69a283000a54d3f612f2e;

    // ------------------------------------------------------------------ helpers

    function expectedDomain(address verifying) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Wayfare"),
                keccak256("1"),
                block.chainid,
                verifying
            )
        );
    }

    function createAddress(address deployer, uint64 nonce) internal pure returns (address) {
        // RLP([deployer, nonce]) for the nonces a test contract reaches (< 2^16)
        require(nonce < 0x10000, "nonce too large for this helper");
        bytes memory rlp;
        if (nonce == 0) rlp = abi.encodePacked(hex"d694", deployer, hex"80");
        else if (nonce < 0x80) rlp = abi.encodePacked(hex"d694", deployer, bytes1(bytes8(nonce << 56)));
        else if (nonce <= 0xff) rlp = abi.encodePacked(hex"d794", deployer, hex"81", bytes1(bytes8(nonce << 56)));
        else rlp = abi.encodePacked(hex"d894", deployer, hex"82", bytes2(bytes8(nonce << 48)));
        return address(uint160(uint256(keccak256(rlp))));
    }
}
