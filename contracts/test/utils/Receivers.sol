// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

/// @notice An account (buyer, payout, seller, burn sink) whose receive() always reverts.
contract RevertingReceiver {
    error NoThanks();

    receive() external payable {
        revert NoThanks();
    }
}

/// @notice An account that, when paid, calls back into `target` with `reentryData` once per
///         payment and records what happened. With `propagate`, a failed re-entry makes the
///         payment itself fail (bubbling the error); otherwise it swallows the failure.
contract ReentrantReceiver {
    address public target;
    bytes public reentryData;
    bool public propagate;
    uint256 public received;
    uint256 public reentries;
    uint256 public reentriesSucceeded;
    bytes public lastReentryError;

    function arm(address target_, bytes calldata reentryData_, bool propagate_) external {
        target = target_;
        reentryData = reentryData_;
        propagate = propagate_;
    }

    receive() external payable {
        received += msg.value;
        if (target == address(0)) return;
        reentries++;
        (bool ok, bytes memory ret) = target.call(reentryData);
        if (ok) {
            reentriesSucceeded++;
        } else {
            lastReentryError = ret;
            if (propagate) {
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
        }
    }
}
