// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {WayfareMarket} from "../../src/WayfareMarket.sol";

/// @title Market event load for the indexer benchmark
/// @notice BENCHMARK ONLY: these contracts are never deployed for real. They let one transaction
///         open, settle or rate many channels of a market on a devnet, so that
///         `crates/wayfare-node/benches/indexer.rs` can make 100,000 market events on anvil in a
///         few minutes. Only the deployer may call the batch functions.
abstract contract LoadOwned {
    /// @notice The deployer, the only caller of the batch functions.
    address public immutable owner;

    /// A batch function was called by someone other than the deployer.
    error NotOwner(address caller);
    /// The batch's arrays differ in length.
    error LengthMismatch(uint256 a, uint256 b);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        _onlyOwner();
        _;
    }

    function _onlyOwner() private view {
        if (msg.sender != owner) revert NotOwner(msg.sender);
    }
}

/// @notice A seller account that is a contract: registered at construction with `signer` as its
///         hot key (an EOA that signs the offers) and itself as payout, funded with msg.value
///         for the seller burns. Settles and rates channels in batches.
contract LoadSeller is LoadOwned {
    /// @notice The market this seller is registered in.
    WayfareMarket public immutable market;

    constructor(WayfareMarket market_, address signer) payable {
        market = market_;
        market_.registerSeller(signer, address(this), keccak256("LoadSeller x25519 key"), "");
        if (msg.value != 0) market_.fundSeller{value: msg.value}();
    }

    /// @notice Settles every channel in `ids` on the best stored voucher (none: 0 to the seller).
    function settleAll(bytes32[] calldata ids) external onlyOwner {
        for (uint256 i = 0; i < ids.length; ++i) {
            market.settle(ids[i], 0, "");
        }
    }

    /// @notice Rates the buyer of every channel in `ids` with the matching score.
    function rateAll(bytes32[] calldata ids, uint8[] calldata scores) external onlyOwner {
        if (ids.length != scores.length) revert LengthMismatch(ids.length, scores.length);
        for (uint256 i = 0; i < ids.length; ++i) {
            market.rate(ids[i], scores[i]);
        }
    }
}

/// @notice A buyer account that is a contract: opens channels in batches (every offer's `buyer`
///         is this contract) and rates their sellers.
contract LoadBuyer is LoadOwned {
    /// @notice The market the channels are opened in.
    WayfareMarket public immutable market;

    /// msg.value is not `valueEach` times the number of offers.
    error WrongValue(uint256 sent, uint256 expected);

    constructor(WayfareMarket market_) {
        market = market_;
    }

    /// @notice Opens one channel per offer, each paid `valueEach` (buyer burn + deposit) out of
    ///         msg.value, which must be exactly `valueEach * offers.length`.
    function openAll(
        WayfareMarket.Offer[] calldata offers,
        bytes[] calldata sigs,
        address voucherSigner,
        uint256 valueEach
    ) external payable onlyOwner {
        if (offers.length != sigs.length) revert LengthMismatch(offers.length, sigs.length);
        uint256 expected = valueEach * offers.length;
        if (msg.value != expected) revert WrongValue(msg.value, expected);
        for (uint256 i = 0; i < offers.length; ++i) {
            market.open{value: valueEach}(offers[i], sigs[i], voucherSigner);
        }
    }

    /// @notice Rates the seller of every channel in `ids` with the matching score.
    function rateAll(bytes32[] calldata ids, uint8[] calldata scores) external onlyOwner {
        if (ids.length != scores.length) revert LengthMismatch(ids.length, scores.length);
        for (uint256 i = 0; i < ids.length; ++i) {
            market.rate(ids[i], scores[i]);
        }
    }
}
