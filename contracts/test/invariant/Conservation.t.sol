// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {InvariantBase, FuzzSelector} from "../utils/Cheats.sol";
import {MarketHandler} from "./MarketHandler.sol";
import {WayfareMarket} from "../../src/WayfareMarket.sol";

/// @notice Attack 10 fuzzed: after every call of every random sequence, the market's balance is
///         exactly what it owes (open deposits + seller funds + withdrawable + unswept burns),
///         burns only ever go to the sink, and no ETH appears or disappears.
contract ConservationInvariantTest is InvariantBase {
    WayfareMarket internal market;
    MarketHandler internal handler;
    address internal sink;

    function setUp() public {
        vm.warp(1_700_000_000);
        sink = vm.addr(0x51c4);
        market = new WayfareMarket(sink, 60);
        handler = new MarketHandler(market, sink);

        bytes4[] memory selectors = new bytes4[](18);
        selectors[0] = MarketHandler.registerSeller.selector;
        selectors[1] = MarketHandler.fundSeller.selector;
        selectors[2] = MarketHandler.withdrawSellerFunds.selector;
        selectors[3] = MarketHandler.toggleActive.selector;
        selectors[4] = MarketHandler.updateSeller.selector;
        // listed three times: opening more often keeps live channels around for the rest
        selectors[5] = MarketHandler.open.selector;
        selectors[6] = MarketHandler.open.selector;
        selectors[7] = MarketHandler.open.selector;
        selectors[8] = MarketHandler.topUp.selector;
        selectors[9] = MarketHandler.settle.selector;
        selectors[10] = MarketHandler.cooperativeClose.selector;
        selectors[11] = MarketHandler.startClose.selector;
        selectors[12] = MarketHandler.submitVoucher.selector;
        selectors[13] = MarketHandler.finalize.selector;
        selectors[14] = MarketHandler.rate.selector;
        selectors[15] = MarketHandler.withdraw.selector;
        selectors[16] = MarketHandler.sweepBurns.selector;
        selectors[17] = MarketHandler.warp.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// The invariant of design/contracts.md, against the handler's ghost accounting.
    function invariant_balanceIsDepositsPlusFundsPlusWithdrawablePlusBurns() public view {
        vm.assertEq(
            address(market).balance,
            handler.ghostOpenDeposits() + handler.ghostSellerFunds() + handler.ghostWithdrawable()
                + handler.ghostBurnsUnswept(),
            "market balance != what it owes"
        );
    }

    /// The market's own views add up to the same figures as the model, account by account.
    function invariant_marketViewsMatchModel() public view {
        vm.assertEq(market.burnedUnswept(), handler.ghostBurnsUnswept(), "burnedUnswept");

        uint256 funds;
        for (uint256 i; i < 3; i++) {
            WayfareMarket.SellerInfo memory s = market.seller(handler.sellers(i));
            MarketHandler.SellerModel memory m = handler.sellerModel(i);
            vm.assertEq(s.funds, m.funds, "seller funds");
            vm.assertEq(s.active, m.active, "seller active");
            vm.assertEq(s.registered, m.registered, "seller registered");
            funds += s.funds;
        }
        vm.assertEq(funds, handler.ghostSellerFunds(), "sum of seller funds");

        uint256 credits;
        address[] memory holders = handler.creditHolders();
        for (uint256 i; i < holders.length; i++) {
            uint256 w = market.withdrawable(holders[i]);
            vm.assertEq(w, handler.modelCredit(holders[i]), "withdrawable");
            credits += w;
        }
        vm.assertEq(credits, handler.ghostWithdrawable(), "sum of withdrawable");

        uint256 deposits;
        uint256 n = handler.channelCount();
        for (uint256 i; i < n; i++) {
            MarketHandler.ChannelModel memory m = handler.channelAt(i);
            WayfareMarket.ChannelInfo memory c = market.channel(m.id);
            vm.assertEq(uint256(c.state), uint256(m.state), "channel state");
            vm.assertEq(c.deposit, m.deposit, "channel deposit");
            vm.assertEq(uint256(c.closesAt), uint256(m.closesAt), "channel closesAt");
            vm.assertEq(c.best, m.best, "channel best");
            vm.assertEq(c.buyerRated, m.buyerRated, "buyer rated");
            vm.assertEq(c.sellerRated, m.sellerRated, "seller rated");
            if (c.state == WayfareMarket.ChannelState.Open || c.state == WayfareMarket.ChannelState.Closing) {
                deposits += c.deposit;
            }
        }
        vm.assertEq(deposits, handler.ghostOpenDeposits(), "sum of open deposits");
    }

    /// Burns go to the sink and nowhere else; no ETH is created or lost anywhere.
    function invariant_burnsOnlyReachTheSinkAndEthIsConserved() public view {
        vm.assertEq(sink.balance, handler.ghostSwept(), "sink balance != swept burns");
        vm.assertEq(handler.ghostSwept() + market.burnedUnswept(), handler.ghostBurnsTotal(), "burns lost or invented");
        uint256 total = address(market).balance + sink.balance;
        address[] memory everyone = handler.cast();
        for (uint256 i; i < everyone.length; i++) {
            total += everyone[i].balance;
        }
        vm.assertEq(total, handler.ghostDealt(), "ETH created or destroyed");
    }

    /// Every call behaved as the rules say (success when allowed, revert when not).
    function invariant_everyCallFollowedTheRules() public view {
        vm.assertEq(handler.violations(), 0, handler.lastViolation());
    }
}
