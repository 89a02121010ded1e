// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {RevertingReceiver} from "./utils/Receivers.sol";
import {WayfareMarket} from "../src/WayfareMarket.sol";

/// @notice Every channel function: the happy path and each revert.
contract ChannelsTest is MarketFixture {
    uint128 internal constant SELLER_FUNDS_128 = 1 ether; // SELLER_FUNDS

    // ------------------------------------------------------------------ open

    function test_open_createsChannelTakesBurnsEmits() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        bytes32 expectedId = keccak256(abi.encode(block.chainid, address(market), sellerAcct, o.nonce));
        uint256 buyerBefore = buyer.balance;

        vm.expectEmit(address(market));
        emit WayfareMarket.ChannelOpened(
            expectedId, sellerAcct, buyer, 1, 1e12, 1e10, SELLER_BURN, BUYER_BURN, DEPOSIT, 15
        );
        vm.prank(buyer);
        bytes32 id = market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);

        vm.assertEq(id, expectedId);
        vm.assertEq(id, market.channelId(sellerAcct, o.nonce));
        WayfareMarket.ChannelInfo memory c = info(id);
        vm.assertEq(c.seller, sellerAcct);
        vm.assertEq(c.buyer, buyer);
        vm.assertEq(c.voucherSigner, voucherSigner);
        vm.assertEq(c.deposit, DEPOSIT);
        vm.assertEq(c.best, 0);
        vm.assertEq(uint256(c.sellerBurn), SELLER_BURN);
        vm.assertEq(uint256(c.buyerBurn), BUYER_BURN);
        vm.assertEq(uint256(c.closesAt), 0);
        vm.assertEq(uint256(c.state), uint256(WayfareMarket.ChannelState.Open));
        vm.assertFalse(c.sellerRated);
        vm.assertFalse(c.buyerRated);

        vm.assertEq(market.seller(sellerAcct).funds, SELLER_FUNDS - SELLER_BURN);
        vm.assertEq(market.burnedUnswept(), SELLER_BURN + BUYER_BURN);
        vm.assertEq(buyer.balance, buyerBefore - BUYER_BURN - DEPOSIT);
        vm.assertEq(address(market).balance, SELLER_FUNDS + BUYER_BURN + DEPOSIT);
    }

    function test_open_exactMinimumAndShadowsocks() public {
        WayfareMarket.Offer memory o = defaultOffer();
        o.service = 2;
        bytes32 id = openWith(o, MIN_DEPOSIT);
        vm.assertEq(info(id).deposit, MIN_DEPOSIT);
    }

    function test_open_zeroBurnsAndZeroDeposit() public {
        WayfareMarket.Offer memory o = defaultOffer();
        o.sellerBurn = 0;
        o.buyerBurn = 0;
        o.minDeposit = 0;
        bytes32 id = openWith(o, 0);
        vm.assertEq(info(id).deposit, 0);
        vm.assertEq(market.burnedUnswept(), 0);
        vm.assertEq(market.seller(sellerAcct).funds, SELLER_FUNDS);
    }

    function test_open_usableAtExpiryNotAfter() public {
        WayfareMarket.Offer memory o = defaultOffer();
        vm.warp(o.expiry);
        openWith(o, DEPOSIT);

        WayfareMarket.Offer memory late = defaultOffer();
        bytes memory sig = signOffer(late, signerKey);
        vm.warp(late.expiry + 1);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(WayfareMarket.OfferExpired.selector, late.expiry, uint256(late.expiry) + 1)
        );
        market.open{value: BUYER_BURN + DEPOSIT}(late, sig, voucherSigner);
    }

    function test_open_revertsForOtherCallers() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        vm.deal(signer, 10 ether);
        address[3] memory callers = [stranger, sellerAcct, signer];
        for (uint256 i; i < callers.length; i++) {
            vm.prank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, callers[i], buyer));
            market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        }
    }

    function test_open_revertsOnBadTerms() public {
        WayfareMarket.Offer memory o = defaultOffer();
        o.service = 0;
        expectOpenRevert(o, voucherSigner, abi.encodeWithSelector(WayfareMarket.BadService.selector, uint8(0)));
        o.service = 3;
        expectOpenRevert(o, voucherSigner, abi.encodeWithSelector(WayfareMarket.BadService.selector, uint8(3)));
        o.service = 1;
        o.paymentInterval = 0;
        expectOpenRevert(o, voucherSigner, abi.encodeWithSelector(WayfareMarket.ZeroInterval.selector));
        o.paymentInterval = 15;
        expectOpenRevert(o, address(0), abi.encodeWithSelector(WayfareMarket.ZeroVoucherSigner.selector));
    }

    function test_open_revertsWhenBuyerIsSeller() public {
        WayfareMarket.Offer memory o = offerFor(sellerAcct, sellerAcct);
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(sellerAcct);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.BuyerIsSeller.selector, sellerAcct));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
    }

    function test_open_revertsOnDepositTooLow() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        uint256 required = uint256(BUYER_BURN) + MIN_DEPOSIT;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DepositTooLow.selector, required - 1, required));
        market.open{value: required - 1}(o, sig, voucherSigner);
    }

    function test_open_revertsOnInsufficientSellerFunds() public {
        WayfareMarket.Offer memory o = defaultOffer();
        o.sellerBurn = SELLER_FUNDS_128 + 1;
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(WayfareMarket.InsufficientSellerFunds.selector, SELLER_FUNDS, SELLER_FUNDS + 1)
        );
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
    }

    function test_open_revertsWhenAmountsDontFit() public {
        uint256 big = uint256(type(uint88).max) + 1;
        WayfareMarket.Offer memory o = defaultOffer();
        // forge-lint: disable-next-line(unsafe-typecast) big = 2^88 fits
        o.buyerBurn = uint128(big);
        bytes memory sig = signOffer(o, signerKey);
        vm.deal(buyer, big + DEPOSIT);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AmountTooLarge.selector, big, type(uint88).max));
        market.open{value: big + DEPOSIT}(o, sig, voucherSigner);

        uint256 hugeDeposit = uint256(type(uint96).max) + 1;
        o = defaultOffer();
        sig = signOffer(o, signerKey);
        vm.deal(buyer, hugeDeposit + BUYER_BURN);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AmountTooLarge.selector, hugeDeposit, type(uint96).max));
        market.open{value: hugeDeposit + BUYER_BURN}(o, sig, voucherSigner);
    }

    function test_open_revertsOnUsedOffer() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(buyer);
        bytes32 id = market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.OfferUsed.selector, id));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
    }

    function test_open_revertsOnBadOrForeignSignature() public {
        WayfareMarket.Offer memory o = defaultOffer();
        // signed by the seller's cold account key, not its signer
        bytes memory bySellerAccount = signOffer(o, sellerKey);
        vm.prank(buyer);
        vm.expectRevert(errWrongSigner(sellerAcct, signer));
        market.open{value: BUYER_BURN + DEPOSIT}(o, bySellerAccount, voucherSigner);
        // 64 bytes
        bytes memory short = new bytes(64);
        vm.prank(buyer);
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.open{value: BUYER_BURN + DEPOSIT}(o, short, voucherSigner);
        // a signature over different terms
        bytes memory sig = signOffer(o, signerKey);
        o.pricePerMiB += 1;
        vm.prank(buyer);
        vm.expectPartialRevert(WayfareMarket.WrongSigner.selector);
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
    }

    function test_open_revertsForUnregisteredOrInactiveSeller() public {
        WayfareMarket.Offer memory o = offerFor(stranger, buyer);
        expectOpenRevert(o, voucherSigner, abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        vm.prank(sellerAcct);
        market.deactivateSeller();
        o = defaultOffer();
        expectOpenRevert(o, voucherSigner, abi.encodeWithSelector(WayfareMarket.SellerInactive.selector, sellerAcct));
        vm.prank(sellerAcct);
        market.reactivateSeller();
        openWith(o, DEPOSIT);
    }

    // ------------------------------------------------------------------ topUp

    function test_topUp_addsToDeposit() public {
        bytes32 id = openDefault();
        vm.expectEmit(address(market));
        emit WayfareMarket.ToppedUp(id, 0.25 ether, DEPOSIT + 0.25 ether);
        vm.prank(buyer);
        market.topUp{value: 0.25 ether}(id);
        vm.assertEq(info(id).deposit, DEPOSIT + 0.25 ether);
    }

    function test_topUp_reverts() public {
        bytes32 id = openDefault();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, stranger, buyer));
        market.topUp{value: 1}(id);
        vm.prank(voucherSigner);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, voucherSigner, buyer));
        market.topUp(id);
        vm.prank(buyer);
        vm.expectRevert(WayfareMarket.ZeroAmount.selector);
        market.topUp(id);

        uint256 room = uint256(type(uint96).max) - DEPOSIT;
        vm.deal(buyer, room + 1);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(
                WayfareMarket.AmountTooLarge.selector, uint256(type(uint96).max) + 1, type(uint96).max
            )
        );
        market.topUp{value: room + 1}(id);

        bytes32 unknown = keccak256("unknown");
        vm.prank(buyer);
        vm.expectRevert(errWrongState(unknown, WayfareMarket.ChannelState.None));
        market.topUp{value: 1}(unknown);
    }

    // ------------------------------------------------------------------ settle

    function test_settle_bySignerPaysVoucherRefundsRest() public {
        bytes32 id = openDefault();
        bytes memory sig = voucherSig(id, 0.3 ether);
        vm.expectEmit(address(market));
        emit WayfareMarket.ChannelClosed(id, 0.3 ether, DEPOSIT - 0.3 ether);
        vm.prank(signer);
        market.settle(id, 0.3 ether, sig);
        assertState(id, WayfareMarket.ChannelState.Closed);
        vm.assertEq(market.withdrawable(payout), 0.3 ether);
        vm.assertEq(market.withdrawable(buyer), DEPOSIT - 0.3 ether);
        vm.assertEq(market.withdrawable(sellerAcct), 0, "earnings go to the payout");
    }

    function test_settle_bySellerAccount() public {
        bytes32 id = openDefault();
        bytes memory sig = voucherSig(id, 0.3 ether);
        vm.prank(sellerAcct);
        market.settle(id, 0.3 ether, sig);
        vm.assertEq(market.withdrawable(payout), 0.3 ether);
    }

    function test_settle_creditsTheCurrentPayout() public {
        bytes32 id = openDefault();
        (address newPayout,) = makeAccount("new payout");
        vm.prank(sellerAcct);
        market.updateSeller(signer, newPayout, ENC_KEY, "");
        bytes memory sig = voucherSig(id, 0.3 ether);
        vm.prank(signer);
        market.settle(id, 0.3 ether, sig);
        vm.assertEq(market.withdrawable(newPayout), 0.3 ether);
        vm.assertEq(market.withdrawable(payout), 0);
    }

    function test_settle_emptySigInOpenRefundsAll() public {
        bytes32 id = openDefault();
        vm.prank(signer);
        market.settle(id, 0.9 ether, ""); // amount ignored without a signature
        vm.assertEq(market.withdrawable(payout), 0);
        vm.assertEq(market.withdrawable(buyer), DEPOSIT);
    }

    function test_settle_emptySigInClosingUsesStoredBest() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.4 ether, voucherSig(id, 0.4 ether));
        vm.prank(signer);
        market.settle(id, 0, "");
        vm.assertEq(market.withdrawable(payout), 0.4 ether);
        vm.assertEq(market.withdrawable(buyer), DEPOSIT - 0.4 ether);
    }

    function test_settle_inClosingTakesTheHigherOfStoredAndNew() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.4 ether, voucherSig(id, 0.4 ether));
        bytes memory lower = voucherSig(id, 0.2 ether);
        vm.prank(signer);
        market.settle(id, 0.2 ether, lower);
        vm.assertEq(market.withdrawable(payout), 0.4 ether);
    }

    function test_settle_inClosingAfterDeadline() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.4 ether, voucherSig(id, 0.4 ether));
        uint64 closesAt = info(id).closesAt;
        vm.warp(closesAt);
        bytes memory late = voucherSig(id, 0.5 ether);
        vm.prank(signer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.settle(id, 0.5 ether, late);
        // without a new voucher the seller may still close on what was stored
        vm.prank(signer);
        market.settle(id, 0, "");
        vm.assertEq(market.withdrawable(payout), 0.4 ether);
    }

    function test_settle_reverts() public {
        bytes32 id = openDefault();
        bytes memory sig = voucherSig(id, 0.3 ether);
        address[3] memory notSeller = [buyer, stranger, voucherSigner];
        for (uint256 i; i < notSeller.length; i++) {
            vm.prank(notSeller[i]);
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotSeller.selector, notSeller[i], sellerAcct));
            market.settle(id, 0.3 ether, sig);
        }
        bytes memory bySigner = signDigest(signerKey, market.hashVoucher(id, 0.3 ether));
        vm.prank(signer);
        vm.expectRevert(errWrongSigner(signer, voucherSigner));
        market.settle(id, 0.3 ether, bySigner);

        bytes32 unknown = keccak256("unknown");
        vm.prank(signer);
        vm.expectRevert(errWrongState(unknown, WayfareMarket.ChannelState.None));
        market.settle(unknown, 0, "");

        vm.prank(signer);
        market.settle(id, 0.3 ether, sig);
        vm.prank(signer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closed));
        market.settle(id, 0.3 ether, sig);
    }

    // ------------------------------------------------------------------ cooperativeClose

    function test_cooperativeClose_byAnyoneOnAgreedAmount() public {
        bytes32 id = openDefault();
        bytes memory v = voucherSig(id, 0.6 ether);
        bytes memory c = consentSig(id, 0.6 ether);
        vm.expectEmit(address(market));
        emit WayfareMarket.ChannelClosed(id, 0.6 ether, DEPOSIT - 0.6 ether);
        vm.prank(stranger);
        market.cooperativeClose(id, 0.6 ether, v, c);
        assertState(id, WayfareMarket.ChannelState.Closed);
        vm.assertEq(market.withdrawable(payout), 0.6 ether);
        vm.assertEq(market.withdrawable(buyer), DEPOSIT - 0.6 ether);
    }

    function test_cooperativeClose_whileClosingIgnoresStoredBest() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.8 ether, voucherSig(id, 0.8 ether));
        bytes memory v = voucherSig(id, 0.5 ether);
        bytes memory c = consentSig(id, 0.5 ether);
        market.cooperativeClose(id, 0.5 ether, v, c);
        vm.assertEq(market.withdrawable(payout), 0.5 ether, "the seller agreed to 0.5");
    }

    function test_cooperativeClose_reverts() public {
        bytes32 id = openDefault();
        bytes memory v = voucherSig(id, 0.6 ether);
        bytes memory c = consentSig(id, 0.6 ether);
        bytes memory cOther = consentSig(id, 0.5 ether);
        // consent for another amount
        vm.expectPartialRevert(WayfareMarket.WrongSigner.selector);
        market.cooperativeClose(id, 0.6 ether, v, cOther);
        // consent signed by the buyer's voucher key
        bytes memory cByBuyer = signDigest(voucherKey, market.hashCloseConsent(id, 0.6 ether));
        vm.expectRevert(errWrongSigner(voucherSigner, signer));
        market.cooperativeClose(id, 0.6 ether, v, cByBuyer);
        // a voucher is not a consent (different type hash)
        bytes memory voucherBySigner = signDigest(signerKey, market.hashVoucher(id, 0.6 ether));
        vm.expectPartialRevert(WayfareMarket.WrongSigner.selector);
        market.cooperativeClose(id, 0.6 ether, v, voucherBySigner);
        // bad signature bytes
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.cooperativeClose(id, 0.6 ether, v, "");

        market.cooperativeClose(id, 0.6 ether, v, c);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closed));
        market.cooperativeClose(id, 0.6 ether, v, c);
    }

    // ------------------------------------------------------------------ startClose / submitVoucher / finalize

    function test_startClose_setsDeadline() public {
        bytes32 id = openDefault();
        uint64 closesAt = uint64(block.timestamp) + PERIOD;
        vm.expectEmit(address(market));
        emit WayfareMarket.CloseStarted(id, closesAt);
        startCloseAsBuyer(id);
        assertState(id, WayfareMarket.ChannelState.Closing);
        vm.assertEq(uint256(info(id).closesAt), uint256(closesAt));
    }

    function test_startClose_reverts() public {
        bytes32 id = openDefault();
        address[3] memory notBuyer = [sellerAcct, signer, voucherSigner];
        for (uint256 i; i < notBuyer.length; i++) {
            vm.prank(notBuyer[i]);
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, notBuyer[i], buyer));
            market.startClose(id);
        }
        startCloseAsBuyer(id);
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closing));
        market.startClose(id);
    }

    function test_submitVoucher_raisesBestOnly() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        bytes memory v3 = voucherSig(id, 0.3 ether);
        vm.expectEmit(address(market));
        emit WayfareMarket.VoucherSubmitted(id, 0.3 ether);
        vm.prank(stranger); // a watchtower
        market.submitVoucher(id, 0.3 ether, v3);
        vm.assertEq(info(id).best, 0.3 ether);

        bytes memory v1 = voucherSig(id, 0.1 ether);
        vm.expectEmit(address(market));
        emit WayfareMarket.VoucherSubmitted(id, 0.3 ether);
        market.submitVoucher(id, 0.1 ether, v1);
        vm.assertEq(info(id).best, 0.3 ether);
    }

    function test_submitVoucher_saturatesAtUint96() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        uint256 huge = type(uint256).max;
        market.submitVoucher(id, huge, voucherSig(id, huge));
        vm.assertEq(info(id).best, type(uint96).max);
        vm.warp(info(id).closesAt);
        market.finalize(id);
        vm.assertEq(market.withdrawable(payout), DEPOSIT);
        vm.assertEq(market.withdrawable(buyer), 0);
    }

    function test_submitVoucher_reverts() public {
        bytes32 id = openDefault();
        bytes memory v = voucherSig(id, 0.3 ether);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Open));
        market.submitVoucher(id, 0.3 ether, v);
        startCloseAsBuyer(id);
        bytes memory byStranger = signDigest(strangerKey, market.hashVoucher(id, 0.3 ether));
        vm.expectRevert(errWrongSigner(stranger, voucherSigner));
        market.submitVoucher(id, 0.3 ether, byStranger);
        uint64 closesAt = info(id).closesAt;
        vm.warp(closesAt);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.submitVoucher(id, 0.3 ether, v);
    }

    function test_finalize_afterDeadlineOnBest() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.7 ether, voucherSig(id, 0.7 ether));
        uint64 closesAt = info(id).closesAt;
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlineNotReached.selector, closesAt));
        market.finalize(id);
        vm.warp(closesAt);
        vm.expectEmit(address(market));
        emit WayfareMarket.ChannelClosed(id, 0.7 ether, DEPOSIT - 0.7 ether);
        vm.prank(stranger);
        market.finalize(id);
        assertState(id, WayfareMarket.ChannelState.Closed);
    }

    function test_finalize_reverts() public {
        bytes32 id = openDefault();
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Open));
        market.finalize(id);
        bytes32 unknown = keccak256("unknown");
        vm.expectRevert(errWrongState(unknown, WayfareMarket.ChannelState.None));
        market.finalize(unknown);
    }

    // ------------------------------------------------------------------ withdraw

    function test_withdraw_paysAndZeroes() public {
        bytes32 id = openDefault();
        bytes memory sig = voucherSig(id, 0.3 ether);
        vm.prank(signer);
        market.settle(id, 0.3 ether, sig);

        uint256 before = payout.balance;
        vm.expectEmit(address(market));
        emit WayfareMarket.Withdrawn(payout, 0.3 ether);
        vm.prank(payout);
        market.withdraw();
        vm.assertEq(payout.balance, before + 0.3 ether);
        vm.assertEq(market.withdrawable(payout), 0);

        vm.prank(payout);
        vm.expectRevert(WayfareMarket.NothingToWithdraw.selector);
        market.withdraw();

        before = buyer.balance;
        vm.prank(buyer);
        market.withdraw();
        vm.assertEq(buyer.balance, before + DEPOSIT - 0.3 ether);
        vm.assertEq(address(market).balance, SELLER_FUNDS - SELLER_BURN + SELLER_BURN + BUYER_BURN);
    }

    function test_withdraw_creditsAccumulateAcrossChannels() public {
        for (uint256 i; i < 3; i++) {
            bytes32 id = openDefault();
            bytes memory sig = voucherSig(id, 0.1 ether);
            vm.prank(signer);
            market.settle(id, 0.1 ether, sig);
        }
        vm.assertEq(market.withdrawable(payout), 0.3 ether);
        vm.assertEq(market.withdrawable(buyer), 3 * (DEPOSIT - 0.1 ether));
    }

    function test_withdraw_revertingReceiverKeepsCredit() public {
        RevertingReceiver r = new RevertingReceiver();
        WayfareMarket.Offer memory o = offerFor(sellerAcct, address(r));
        vm.deal(address(r), 10 ether);
        openWith(o, DEPOSIT);
        bytes32 id = market.channelId(sellerAcct, o.nonce);
        vm.prank(signer);
        market.settle(id, 0, "");
        vm.prank(address(r));
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.TransferFailed.selector, address(r), DEPOSIT));
        market.withdraw();
        vm.assertEq(market.withdrawable(address(r)), DEPOSIT);
    }

    // ------------------------------------------------------------------ rate

    function test_rate_bothSidesWithBurnWeights() public {
        bytes32 id = closedChannel();
        vm.expectEmit(address(market));
        emit WayfareMarket.Rated(id, buyer, sellerAcct, 5, BUYER_BURN);
        vm.prank(buyer);
        market.rate(id, 5);
        vm.expectEmit(address(market));
        emit WayfareMarket.Rated(id, sellerAcct, buyer, 1, SELLER_BURN);
        vm.prank(sellerAcct);
        market.rate(id, 1);
        vm.assertTrue(info(id).buyerRated);
        vm.assertTrue(info(id).sellerRated);
    }

    function test_rate_byHotKeysNamesTheAccounts() public {
        bytes32 id = closedChannel();
        vm.expectEmit(address(market));
        emit WayfareMarket.Rated(id, sellerAcct, buyer, 4, SELLER_BURN);
        vm.prank(signer);
        market.rate(id, 4);
        vm.expectEmit(address(market));
        emit WayfareMarket.Rated(id, buyer, sellerAcct, 3, BUYER_BURN);
        vm.prank(voucherSigner);
        market.rate(id, 3);
    }

    function test_rate_reverts() public {
        bytes32 id = openDefault();
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Open));
        market.rate(id, 5);
        vm.prank(signer);
        market.settle(id, 0, "");
        vm.startPrank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.BadScore.selector, uint8(0)));
        market.rate(id, 0);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.BadScore.selector, uint8(6)));
        market.rate(id, 6);
        market.rate(id, 5);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AlreadyRated.selector, id, buyer));
        market.rate(id, 5);
        vm.stopPrank();
        vm.prank(voucherSigner);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AlreadyRated.selector, id, voucherSigner));
        market.rate(id, 1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotParty.selector, stranger));
        market.rate(id, 3);
        vm.prank(payout);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotParty.selector, payout));
        market.rate(id, 3);
    }

    // ------------------------------------------------------------------ sweepBurns

    function test_sweepBurns_sendsToSink() public {
        openDefault();
        openDefault();
        uint256 burnt = 2 * (uint256(SELLER_BURN) + BUYER_BURN);
        vm.assertEq(market.burnedUnswept(), burnt);
        vm.expectEmit(address(market));
        emit WayfareMarket.BurnsSwept(sink, burnt);
        vm.prank(stranger);
        market.sweepBurns();
        vm.assertEq(sink.balance, burnt);
        vm.assertEq(market.burnedUnswept(), 0);
        vm.expectRevert(WayfareMarket.NothingToSweep.selector);
        market.sweepBurns();
        // the counter works again after a sweep
        openDefault();
        vm.assertEq(market.burnedUnswept(), uint256(SELLER_BURN) + BUYER_BURN);
    }

    function test_sweepBurns_revertingSinkKeepsBurns() public {
        RevertingReceiver r = new RevertingReceiver();
        market = new WayfareMarket(address(r), PERIOD);
        vm.prank(sellerAcct);
        market.registerSeller{value: SELLER_FUNDS}(signer, payout, ENC_KEY, "");
        openDefault();
        uint256 burnt = uint256(SELLER_BURN) + BUYER_BURN;
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.TransferFailed.selector, address(r), burnt));
        market.sweepBurns();
        vm.assertEq(market.burnedUnswept(), burnt);
    }

    // ------------------------------------------------------------------ fuzz: the split

    function testFuzz_closeSplitsDepositExactly(uint256 deposit, uint256 amount, uint8 how) public {
        deposit = bound(deposit, 0, 50 ether);
        WayfareMarket.Offer memory o = defaultOffer();
        o.minDeposit = 0;
        bytes32 id = openWith(o, deposit);
        bytes memory v = voucherSig(id, amount);
        how = how % 3;
        if (how == 0) {
            vm.prank(signer);
            market.settle(id, amount, v);
        } else if (how == 1) {
            market.cooperativeClose(id, amount, v, consentSig(id, amount));
        } else {
            startCloseAsBuyer(id);
            market.submitVoucher(id, amount, v);
            vm.warp(block.timestamp + PERIOD);
            market.finalize(id);
        }
        uint256 toSeller = amount < deposit ? amount : deposit;
        vm.assertEq(market.withdrawable(payout), toSeller);
        vm.assertEq(market.withdrawable(buyer), deposit - toSeller);
        vm.assertEq(address(market).balance, SELLER_FUNDS + BUYER_BURN + deposit);
    }

    // ------------------------------------------------------------------ helpers

    function closedChannel() internal returns (bytes32 id) {
        id = openDefault();
        bytes memory sig = voucherSig(id, 0.2 ether);
        vm.prank(signer);
        market.settle(id, 0.2 ether, sig);
    }

    function expectOpenRevert(WayfareMarket.Offer memory o, address vs, bytes memory err) internal {
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(o.buyer);
        vm.expectRevert(err);
        market.open{value: o.buyerBurn + DEPOSIT}(o, sig, vs);
    }
}

