// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {RevertingReceiver, ReentrantReceiver} from "./utils/Receivers.sol";
import {WayfareMarket} from "../src/WayfareMarket.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice The 15 attacks of design/contracts.md, one test each, all shown failing.
contract AttacksTest is MarketFixture {
    // 1. A voucher replayed on another channel, another chain id, another deployment.
    function test_attack01_voucherReplayOtherChannelChainDeployment() public {
        bytes32 a = openDefault();
        bytes32 b = openDefault(); // same buyer, same voucher signer: the hardest case
        bytes memory sigA = voucherSig(a, 0.5 ether);

        // another channel: settle, submitVoucher and cooperativeClose all refuse it
        expectWrongSignerOn(market.hashVoucher(b, 0.5 ether), sigA);
        vm.prank(signer);
        market.settle(b, 0.5 ether, sigA);
        startCloseAsBuyer(b);
        expectWrongSignerOn(market.hashVoucher(b, 0.5 ether), sigA);
        market.submitVoucher(b, 0.5 ether, sigA);
        bytes memory consentB = consentSig(b, 0.5 ether);
        expectWrongSignerOn(market.hashVoucher(b, 0.5 ether), sigA);
        market.cooperativeClose(b, 0.5 ether, sigA, consentB);

        // another chain id (e.g. a fork of this chain): the domain separator changes
        uint256 home = block.chainid;
        vm.chainId(home + 1);
        expectWrongSignerOn(market.hashVoucher(a, 0.5 ether), sigA);
        vm.prank(signer);
        market.settle(a, 0.5 ether, sigA);
        vm.chainId(home);

        // another deployment with the same seller, buyer, keys and nonce
        WayfareMarket other = new WayfareMarket(sink, PERIOD);
        vm.prank(sellerAcct);
        other.registerSeller{value: SELLER_FUNDS}(signer, payout, ENC_KEY, "");
        WayfareMarket.Offer memory o = defaultOffer();
        o.nonce = 1; // the nonce channel `a` used here
        bytes memory offerSig = signDigest(signerKey, other.hashOffer(o));
        vm.prank(buyer);
        bytes32 twin = other.open{value: BUYER_BURN + DEPOSIT}(o, offerSig, voucherSigner);
        vm.assertNotEq(twin, a);
        vm.expectPartialRevert(WayfareMarket.WrongSigner.selector);
        vm.prank(signer);
        other.settle(twin, 0.5 ether, sigA);
        vm.expectRevert(errWrongState(a, WayfareMarket.ChannelState.None));
        vm.prank(signer);
        other.settle(a, 0.5 ether, sigA);

        // and it still works where it belongs
        vm.prank(signer);
        market.settle(a, 0.5 ether, sigA);
        vm.assertEq(market.withdrawable(payout), 0.5 ether);
    }

    // 2. Malleable / invalid / zero-recovering signatures; vouchers signed by seller or a stranger.
    function test_attack02_malleableInvalidZeroRecoveryAndForeignSigners() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        bytes32 digest = market.hashVoucher(id, 0.5 ether);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(voucherKey, digest);

        // the high-s twin recovers to the same key with the raw precompile...
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 flippedV = v == 27 ? 28 : 27;
        vm.assertEq(ecrecover(digest, flippedV, r, highS), voucherSigner);
        // ...but the market rejects it
        expectBadVoucher(id, abi.encodePacked(r, highS, flippedV));
        // invalid v, zero r (recovers to address(0)), wrong lengths, empty, EIP-2098 compact form
        expectBadVoucher(id, abi.encodePacked(r, s, uint8(29)));
        expectBadVoucher(id, abi.encodePacked(r, s, uint8(0)));
        vm.assertEq(ecrecover(digest, v, bytes32(0), s), address(0));
        expectBadVoucher(id, abi.encodePacked(bytes32(0), s, v));
        expectBadVoucher(id, abi.encodePacked(r, s));
        expectBadVoucher(id, abi.encodePacked(r, s, v, uint8(0)));
        // (an empty signature means "no new voucher" to settle, so only submitVoucher sees it)
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.submitVoucher(id, 0.5 ether, "");
        bytes32 vs = bytes32(uint256(s) | (uint256(v - 27) << 255));
        expectBadVoucher(id, abi.encodePacked(r, vs));

        // well-formed signatures by the wrong keys
        address[3] memory wrong = [signer, sellerAcct, stranger];
        uint256[3] memory keys = [signerKey, sellerKey, strangerKey];
        for (uint256 i; i < 3; i++) {
            bytes memory sig = signDigest(keys[i], digest);
            vm.expectRevert(errWrongSigner(wrong[i], voucherSigner));
            market.submitVoucher(id, 0.5 ether, sig);
            vm.expectRevert(errWrongSigner(wrong[i], voucherSigner));
            vm.prank(signer);
            market.settle(id, 0.5 ether, sig);
        }
        // the malleable twin of an offer signature is refused too
        WayfareMarket.Offer memory o = defaultOffer();
        (v, r, s) = vm.sign(signerKey, market.hashOffer(o));
        bytes memory twin = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.prank(buyer);
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.open{value: BUYER_BURN + DEPOSIT}(o, twin, voucherSigner);

        vm.assertEq(info(id).best, 0, "nothing got through");
    }

    // 3. An offer reused, used by another buyer, expired, or signed by a rotated-out signer.
    function test_attack03_offerReusedOtherBuyerExpiredRotatedSigner() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        // another buyer
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, stranger, buyer));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        // another buyer editing the buyer field breaks the signature
        WayfareMarket.Offer memory stolen = copyOffer(o);
        stolen.buyer = stranger;
        vm.prank(stranger);
        vm.expectPartialRevert(WayfareMarket.WrongSigner.selector);
        market.open{value: BUYER_BURN + DEPOSIT}(stolen, sig, voucherSigner);
        // reused, also after the channel closed
        vm.prank(buyer);
        bytes32 id = market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.OfferUsed.selector, id));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        vm.prank(signer);
        market.settle(id, 0, "");
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.OfferUsed.selector, id));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        // expired
        WayfareMarket.Offer memory old = defaultOffer();
        bytes memory oldSig = signOffer(old, signerKey);
        vm.warp(uint256(old.expiry) + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.OfferExpired.selector, old.expiry, block.timestamp));
        market.open{value: BUYER_BURN + DEPOSIT}(old, oldSig, voucherSigner);
        // signed by a rotated-out signer: void, and the signer can't be rotated back in
        WayfareMarket.Offer memory pending = defaultOffer();
        bytes memory pendingSig = signOffer(pending, signerKey);
        (address newSigner,) = makeAccount("new signer");
        vm.prank(sellerAcct);
        market.updateSeller(newSigner, payout, ENC_KEY, "");
        vm.prank(buyer);
        vm.expectRevert(errWrongSigner(signer, newSigner));
        market.open{value: BUYER_BURN + DEPOSIT}(pending, pendingSig, voucherSigner);
        vm.prank(sellerAcct);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SignerRetired.selector, signer));
        market.updateSeller(signer, payout, ENC_KEY, "");
    }

    // 4. A lower voucher after a higher one never lowers `best`; a stranger can't close early.
    function test_attack04_lowerVoucherNeverLowersBestStrangerCantCloseEarly() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        market.submitVoucher(id, 0.5 ether, voucherSig(id, 0.5 ether));
        market.submitVoucher(id, 0.2 ether, voucherSig(id, 0.2 ether));
        market.submitVoucher(id, 0, voucherSig(id, 0));
        vm.assertEq(info(id).best, 0.5 ether);

        vm.startPrank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotSeller.selector, stranger, sellerAcct));
        market.settle(id, 0, "");
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlineNotReached.selector, info(id).closesAt));
        market.finalize(id);
        bytes memory fakeConsent = signDigest(strangerKey, market.hashCloseConsent(id, 0.2 ether));
        bytes memory v2 = voucherSig(id, 0.2 ether);
        vm.expectRevert(errWrongSigner(stranger, signer));
        market.cooperativeClose(id, 0.2 ether, v2, fakeConsent);
        vm.stopPrank();

        // nor on an Open channel
        bytes32 open2 = openDefault();
        vm.startPrank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotBuyer.selector, stranger, buyer));
        market.startClose(open2);
        vm.expectRevert(errWrongState(open2, WayfareMarket.ChannelState.Open));
        market.finalize(open2);
        vm.stopPrank();

        vm.warp(info(id).closesAt);
        market.finalize(id);
        vm.assertEq(market.withdrawable(payout), 0.5 ether);
    }

    // 5. A voucher above the deposit pays the deposit, never more; the refund is never negative.
    function test_attack05_voucherAboveDepositPaysDepositOnly() public {
        uint256 balanceBefore = address(market).balance;
        // settle
        bytes32 a = openDefault();
        bytes memory big = voucherSig(a, 5 ether);
        vm.prank(signer);
        market.settle(a, 5 ether, big);
        // cooperativeClose
        bytes32 b = openDefault();
        market.cooperativeClose(b, 7 ether, voucherSig(b, 7 ether), consentSig(b, 7 ether));
        // dispute
        bytes32 c = openDefault();
        startCloseAsBuyer(c);
        market.submitVoucher(c, 9 ether, voucherSig(c, 9 ether));
        vm.warp(info(c).closesAt);
        market.finalize(c);

        vm.assertEq(market.withdrawable(payout), 3 * DEPOSIT, "exactly the deposits");
        vm.assertEq(market.withdrawable(buyer), 0);
        uint256 burns = 3 * (uint256(SELLER_BURN) + BUYER_BURN);
        vm.assertEq(address(market).balance, balanceBefore + 3 * (uint256(BUYER_BURN) + DEPOSIT));
        vm.assertEq(market.burnedUnswept(), burns);
        assertConserved(0);
    }

    // 6. Buyer starts a close while the seller is away: a watchtower's voucher counts, a late
    //    one fails, finalize before the deadline fails.
    function test_attack06_sellerAwayWatchtowerCountsLateFailsEarlyFinalizeFails() public {
        bytes32 id = openDefault();
        bytes memory best = voucherSig(id, 0.6 ether); // the seller handed it to its watchtower
        startCloseAsBuyer(id);
        uint64 closesAt = info(id).closesAt;

        vm.warp(closesAt - 1);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlineNotReached.selector, closesAt));
        market.finalize(id);
        vm.prank(stranger); // the watchtower
        market.submitVoucher(id, 0.6 ether, best);

        vm.warp(closesAt);
        bytes memory late = voucherSig(id, 0.9 ether);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.submitVoucher(id, 0.9 ether, late);

        vm.prank(buyer);
        market.finalize(id);
        vm.assertEq(market.withdrawable(payout), 0.6 ether, "the watchtower's voucher counted");
        vm.assertEq(market.withdrawable(buyer), DEPOSIT - 0.6 ether);
    }

    // 7. startClose twice can't extend; topUp while Closing fails; settle/finalize twice fails.
    function test_attack07_noExtendNoTopUpWhileClosingNoDoubleClose() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        uint64 closesAt = info(id).closesAt;
        vm.warp(block.timestamp + PERIOD / 2);
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closing));
        market.startClose(id);
        vm.assertEq(uint256(info(id).closesAt), uint256(closesAt), "deadline unchanged");
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closing));
        market.topUp{value: 1 ether}(id);

        vm.warp(closesAt);
        market.finalize(id);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closed));
        market.finalize(id);
        vm.prank(signer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closed));
        market.settle(id, 0, "");
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closed));
        market.startClose(id);

        bytes32 s = openDefault();
        bytes memory v = voucherSig(s, 0.1 ether);
        vm.startPrank(signer);
        market.settle(s, 0.1 ether, v);
        vm.expectRevert(errWrongState(s, WayfareMarket.ChannelState.Closed));
        market.settle(s, 0.1 ether, v);
        vm.stopPrank();
        vm.prank(buyer);
        vm.expectRevert(errWrongState(s, WayfareMarket.ChannelState.Closed));
        market.topUp{value: 1 ether}(s);

        vm.assertEq(market.withdrawable(payout), 0.1 ether);
        vm.assertEq(market.withdrawable(buyer), DEPOSIT + DEPOSIT - 0.1 ether, "each deposit paid out once");
    }

    // 8. cooperativeClose racing startClose or settle, in either order, stays consistent.
    function test_attack08_cooperativeCloseRacesStayConsistent() public {
        // startClose then cooperativeClose: closes on the agreed amount, the dispute is over
        bytes32 a = openDefault();
        bytes memory va = voucherSig(a, 0.3 ether);
        bytes memory ca = consentSig(a, 0.3 ether);
        startCloseAsBuyer(a);
        market.cooperativeClose(a, 0.3 ether, va, ca);
        vm.warp(block.timestamp + PERIOD);
        vm.expectRevert(errWrongState(a, WayfareMarket.ChannelState.Closed));
        market.finalize(a);

        // cooperativeClose then startClose
        bytes32 b = openDefault();
        market.cooperativeClose(b, 0.3 ether, voucherSig(b, 0.3 ether), consentSig(b, 0.3 ether));
        vm.prank(buyer);
        vm.expectRevert(errWrongState(b, WayfareMarket.ChannelState.Closed));
        market.startClose(b);

        // settle then cooperativeClose
        bytes32 c = openDefault();
        bytes memory vc = voucherSig(c, 0.3 ether);
        bytes memory cc = consentSig(c, 0.4 ether);
        bytes memory vc4 = voucherSig(c, 0.4 ether);
        vm.prank(signer);
        market.settle(c, 0.3 ether, vc);
        vm.expectRevert(errWrongState(c, WayfareMarket.ChannelState.Closed));
        market.cooperativeClose(c, 0.4 ether, vc4, cc);

        // cooperativeClose then settle
        bytes32 d = openDefault();
        bytes memory vd = voucherSig(d, 0.9 ether);
        market.cooperativeClose(d, 0.3 ether, voucherSig(d, 0.3 ether), consentSig(d, 0.3 ether));
        vm.prank(signer);
        vm.expectRevert(errWrongState(d, WayfareMarket.ChannelState.Closed));
        market.settle(d, 0.9 ether, vd);

        // every channel paid 0.3 to the seller and the rest to the buyer, once
        vm.assertEq(market.withdrawable(payout), 4 * 0.3 ether);
        vm.assertEq(market.withdrawable(buyer), 4 * (DEPOSIT - 0.3 ether));
    }

    // 9. Seller withdraws its funds just before an open: the open reverts and takes no burn.
    function test_attack09_sellerWithdrawsFundsBeforeOpenNoBurn() public {
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(sellerAcct); // front-runs the buyer's open
        market.withdrawSellerFunds(SELLER_FUNDS);

        uint256 buyerBefore = buyer.balance;
        uint256 marketBefore = address(market).balance;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.InsufficientSellerFunds.selector, 0, SELLER_BURN));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        vm.assertEq(buyer.balance, buyerBefore, "buyer paid nothing");
        vm.assertEq(address(market).balance, marketBefore);
        vm.assertEq(market.burnedUnswept(), 0, "no burn taken");
        assertState(market.channelId(sellerAcct, o.nonce), WayfareMarket.ChannelState.None);

        // once funded again, the same offer opens
        vm.prank(sellerAcct);
        market.fundSeller{value: SELLER_BURN}();
        openWith(o, DEPOSIT);
    }

    // 10. Burns always reach the sink; funds are conserved (fuzzed in test/invariant/).
    function test_attack10_burnsReachSinkFundsConserved() public {
        uint256 burns;
        uint256 deposits;
        for (uint256 i; i < 4; i++) {
            bytes32 id = openDefault();
            burns += uint256(SELLER_BURN) + BUYER_BURN;
            deposits += DEPOSIT;
            if (i % 2 == 0) {
                bytes memory v = voucherSig(id, 0.25 ether);
                vm.prank(signer);
                market.settle(id, 0.25 ether, v);
                deposits -= DEPOSIT;
            }
            assertConserved(deposits);
            if (i == 1) market.sweepBurns();
        }
        vm.prank(buyer);
        market.withdraw();
        assertConserved(deposits);
        market.sweepBurns();
        vm.assertEq(sink.balance, burns, "every burn at the sink");
        vm.assertEq(market.burnedUnswept(), 0);
        assertConserved(deposits);
        // nobody can sweep anywhere else: the sink is fixed at deploy
        vm.assertEq(market.burnSink(), sink);
    }

    // 11. A receiver that reverts or re-enters can't block or drain anything.
    function test_attack11_revertingOrReentrantReceiverCantBlockOrDrain() public {
        // a buyer account that reverts on receipt can't block the seller's settle
        RevertingReceiver rev = new RevertingReceiver();
        vm.deal(address(rev), 10 ether);
        WayfareMarket.Offer memory o = offerFor(sellerAcct, address(rev));
        bytes32 a = openWith(o, DEPOSIT);
        bytes memory va = voucherSig(a, 0.4 ether);
        vm.prank(signer);
        market.settle(a, 0.4 ether, va);
        vm.prank(payout);
        market.withdraw();
        vm.prank(address(rev));
        vm.expectPartialRevert(WayfareMarket.TransferFailed.selector);
        market.withdraw();
        vm.assertEq(market.withdrawable(address(rev)), DEPOSIT - 0.4 ether, "its credit waits for it");

        // a payout that re-enters withdraw() is paid once; the re-entry is refused
        ReentrantReceiver re = new ReentrantReceiver();
        vm.prank(sellerAcct);
        market.updateSeller(signer, address(re), ENC_KEY, "");
        re.arm(address(market), abi.encodeCall(WayfareMarket.withdraw, ()), false);
        bytes32 b = openDefault();
        bytes memory vb = voucherSig(b, 0.5 ether);
        vm.prank(signer);
        market.settle(b, 0.5 ether, vb);
        uint256 balanceBefore = address(market).balance;
        vm.prank(address(re));
        market.withdraw();
        vm.assertEq(re.received(), 0.5 ether);
        vm.assertEq(re.reentries(), 1);
        vm.assertEq(re.reentriesSucceeded(), 0);
        vm.assertEq(
            re.lastReentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        vm.assertEq(address(market).balance, balanceBefore - 0.5 ether, "drained nothing more");

        // re-entering sweepBurns / withdrawSellerFunds from a payment is refused too
        re.arm(address(market), abi.encodeCall(WayfareMarket.sweepBurns, ()), false);
        bytes32 c = openDefault();
        bytes memory vc = voucherSig(c, 0.5 ether);
        vm.prank(signer);
        market.settle(c, 0.5 ether, vc);
        uint256 burnsBefore = market.burnedUnswept();
        vm.prank(address(re));
        market.withdraw();
        vm.assertEq(re.reentriesSucceeded(), 0);
        vm.assertEq(market.burnedUnswept(), burnsBefore);

        // a re-entrant receiver that bubbles the failure only fails its own withdrawal
        re.arm(address(market), abi.encodeCall(WayfareMarket.withdraw, ()), true);
        bytes32 d = openDefault();
        bytes memory vd = voucherSig(d, 0.5 ether);
        vm.prank(signer);
        market.settle(d, 0.5 ether, vd);
        vm.prank(address(re));
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.TransferFailed.selector, address(re), 0.5 ether));
        market.withdraw();
        vm.assertEq(market.withdrawable(address(re)), 0.5 ether);
        // the buyer is unaffected
        uint256 buyerCredit = market.withdrawable(buyer);
        uint256 buyerBefore = buyer.balance;
        vm.prank(buyer);
        market.withdraw();
        vm.assertEq(buyer.balance, buyerBefore + buyerCredit);

        // a burn sink that re-enters sweepBurns can't take the burns twice
        ReentrantReceiver reSink = new ReentrantReceiver();
        WayfareMarket m2 = new WayfareMarket(address(reSink), PERIOD);
        reSink.arm(address(m2), abi.encodeCall(WayfareMarket.sweepBurns, ()), false);
        vm.prank(sellerAcct);
        m2.registerSeller{value: SELLER_FUNDS}(signer, payout, ENC_KEY, "");
        WayfareMarket.Offer memory o2 = defaultOffer();
        bytes memory s2 = signDigest(signerKey, m2.hashOffer(o2));
        vm.prank(buyer);
        m2.open{value: BUYER_BURN + DEPOSIT}(o2, s2, voucherSigner);
        m2.sweepBurns();
        vm.assertEq(reSink.received(), uint256(SELLER_BURN) + BUYER_BURN);
        vm.assertEq(reSink.reentriesSucceeded(), 0);
        vm.assertEq(address(m2).balance, SELLER_FUNDS - SELLER_BURN + DEPOSIT);
    }

    // 12. A close consent reused on another channel or after close.
    function test_attack12_closeConsentReusedOtherChannelOrAfterClose() public {
        bytes32 a = openDefault();
        bytes32 b = openDefault();
        bytes memory consentA = consentSig(a, 0.2 ether);
        bytes memory voucherA = voucherSig(a, 0.2 ether);
        bytes memory voucherB = voucherSig(b, 0.2 ether);
        // on another channel
        expectWrongSignerOn(market.hashCloseConsent(b, 0.2 ether), consentA, signer);
        market.cooperativeClose(b, 0.2 ether, voucherB, consentA);
        // after close
        market.cooperativeClose(a, 0.2 ether, voucherA, consentA);
        vm.expectRevert(errWrongState(a, WayfareMarket.ChannelState.Closed));
        market.cooperativeClose(a, 0.2 ether, voucherA, consentA);
        // as a voucher (a consent is not a voucher)
        startCloseAsBuyer(b);
        bytes memory consentB = consentSig(b, 0.2 ether);
        expectWrongSignerOn(market.hashVoucher(b, 0.2 ether), consentB);
        market.submitVoucher(b, 0.2 ether, consentB);
        // from a rotated-out signer
        (address newSigner,) = makeAccount("new signer");
        vm.prank(sellerAcct);
        market.updateSeller(newSigner, payout, ENC_KEY, "");
        vm.expectRevert(errWrongSigner(signer, newSigner));
        market.cooperativeClose(b, 0.2 ether, voucherB, consentB);
        vm.assertEq(market.withdrawable(payout), 0.2 ether, "only channel a closed");
    }

    // 13. Deadline boundaries at closesAt - 1, closesAt, closesAt + 1; the constructor rejects
    //     challengePeriod < 60.
    function test_attack13_deadlineBoundariesAndMinimumChallengePeriod() public {
        bytes32 id = openDefault();
        startCloseAsBuyer(id);
        uint64 closesAt = info(id).closesAt;
        vm.assertEq(uint256(closesAt), block.timestamp + PERIOD);

        vm.warp(closesAt - 1);
        market.submitVoucher(id, 0.1 ether, voucherSig(id, 0.1 ether));
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlineNotReached.selector, closesAt));
        market.finalize(id);

        vm.warp(closesAt);
        bytes memory v2 = voucherSig(id, 0.2 ether);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.submitVoucher(id, 0.2 ether, v2);
        vm.prank(signer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.settle(id, 0.2 ether, v2);

        vm.warp(uint256(closesAt) + 1);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.DeadlinePassed.selector, closesAt));
        market.submitVoucher(id, 0.2 ether, v2);
        market.finalize(id);
        vm.assertEq(market.withdrawable(payout), 0.1 ether);

        // finalize exactly at closesAt works as well
        bytes32 id2 = openDefault();
        startCloseAsBuyer(id2);
        vm.warp(info(id2).closesAt);
        market.finalize(id2);
        assertState(id2, WayfareMarket.ChannelState.Closed);

        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.ChallengePeriodTooShort.selector, uint64(59)));
        new WayfareMarket(sink, 59);
        WayfareMarket m = new WayfareMarket(sink, 60);
        vm.assertEq(uint256(m.challengePeriod()), 60);
    }

    // 14. Only the seller changes its record; an unregistered or deactivated seller can't be
    //     opened against.
    function test_attack14_onlySellerChangesRecordUnregisteredOrInactiveCantBeOpened() public {
        address[4] memory others = [signer, payout, buyer, stranger];
        for (uint256 i; i < others.length; i++) {
            vm.startPrank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, others[i]));
            market.updateSeller(others[i], others[i], bytes32(0), "hijack");
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, others[i]));
            market.deactivateSeller();
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, others[i]));
            market.withdrawSellerFunds(1);
            vm.stopPrank();
        }
        WayfareMarket.SellerInfo memory s = market.seller(sellerAcct);
        vm.assertEq(s.signer, signer);
        vm.assertEq(s.payout, payout);
        vm.assertEq(s.funds, SELLER_FUNDS);
        vm.assertTrue(s.active);

        // an unregistered "seller" whose offer is signed by its own key
        WayfareMarket.Offer memory fake = offerFor(stranger, buyer);
        bytes memory fakeSig = signOffer(fake, strangerKey);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerNotRegistered.selector, stranger));
        market.open{value: BUYER_BURN + DEPOSIT}(fake, fakeSig, voucherSigner);

        // a deactivated seller: no new channels, the open ones run on
        bytes32 running = openDefault();
        WayfareMarket.Offer memory o = defaultOffer();
        bytes memory sig = signOffer(o, signerKey);
        vm.prank(sellerAcct);
        market.deactivateSeller();
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.SellerInactive.selector, sellerAcct));
        market.open{value: BUYER_BURN + DEPOSIT}(o, sig, voucherSigner);
        vm.prank(buyer);
        market.topUp{value: 0.1 ether}(running);
        bytes memory v = voucherSig(running, 0.3 ether);
        vm.prank(signer);
        market.settle(running, 0.3 ether, v);
        vm.assertEq(market.withdrawable(payout), 0.3 ether);
    }

    // 15. Ratings: only after Closed, once per side, only by the parties.
    function test_attack15_ratingsOnlyAfterClosedOncePerSidePartiesOnly() public {
        bytes32 id = openDefault();
        vm.prank(buyer);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Open));
        market.rate(id, 1);
        startCloseAsBuyer(id);
        vm.prank(sellerAcct);
        vm.expectRevert(errWrongState(id, WayfareMarket.ChannelState.Closing));
        market.rate(id, 1);
        bytes32 unknown = keccak256("never opened");
        vm.prank(buyer);
        vm.expectRevert(errWrongState(unknown, WayfareMarket.ChannelState.None));
        market.rate(unknown, 5);

        vm.warp(info(id).closesAt);
        market.finalize(id);

        address[2] memory outsiders = [stranger, payout];
        for (uint256 i; i < outsiders.length; i++) {
            vm.prank(outsiders[i]);
            vm.expectRevert(abi.encodeWithSelector(WayfareMarket.NotParty.selector, outsiders[i]));
            market.rate(id, 5);
        }

        vm.prank(voucherSigner);
        market.rate(id, 2);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AlreadyRated.selector, id, buyer));
        market.rate(id, 5);

        vm.prank(sellerAcct);
        market.rate(id, 4);
        vm.prank(signer);
        vm.expectRevert(abi.encodeWithSelector(WayfareMarket.AlreadyRated.selector, id, signer));
        market.rate(id, 5);

        // a rating on one channel doesn't count for another
        bytes32 other = openDefault();
        vm.prank(signer);
        market.settle(other, 0, "");
        vm.prank(buyer);
        market.rate(other, 5);
        vm.assertFalse(info(other).sellerRated);
    }

    // ------------------------------------------------------------------ helpers

    function copyOffer(WayfareMarket.Offer memory o) internal pure returns (WayfareMarket.Offer memory) {
        return abi.decode(abi.encode(o), (WayfareMarket.Offer));
    }

    /// @dev The next call must revert with WrongSigner(recovered, voucherSigner), where
    ///      `recovered` is whatever `sig` recovers to over `digest`.
    function expectWrongSignerOn(bytes32 digest, bytes memory sig) internal {
        expectWrongSignerOn(digest, sig, voucherSigner);
    }

    function expectWrongSignerOn(bytes32 digest, bytes memory sig, address expected) internal {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        address recovered = ecrecover(digest, v, r, s);
        vm.assertTrue(recovered != address(0) && recovered != expected, "a replay recovers to someone else");
        vm.expectRevert(errWrongSigner(recovered, expected));
    }

    function expectBadVoucher(bytes32 id, bytes memory sig) internal {
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.submitVoucher(id, 0.5 ether, sig);
        vm.prank(signer);
        vm.expectRevert(WayfareMarket.BadSignature.selector);
        market.settle(id, 0.5 ether, sig);
    }

    /// @dev balance == open deposits + seller funds + withdrawable + unswept burns, for this
    ///      fixture's accounts.
    function assertConserved(uint256 openDeposits) internal view {
        vm.assertEq(
            address(market).balance,
            openDeposits + market.seller(sellerAcct).funds + market.withdrawable(payout) + market.withdrawable(buyer)
                + market.burnedUnswept(),
            "conservation"
        );
    }
}
